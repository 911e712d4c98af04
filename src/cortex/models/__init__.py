"""Pydantic models for everything Cortex reads, plans, sends and reports. JSON schemas live under ``schemas/``."""

from cortex.models.cluster import Cluster, Node, NodeRole
from cortex.models.messages import Envelope, MessageType
from cortex.models.plan import Plan
from cortex.models.roster import Master, PlaybookTask, Roster, WorkerType
from cortex.models.state import ExecutionState
from cortex.models.task import RetryPolicy, Task, TaskState

__all__ = [
    "Cluster",
    "Envelope",
    "ExecutionState",
    "Master",
    "MessageType",
    "Node",
    "NodeRole",
    "Plan",
    "PlaybookTask",
    "RetryPolicy",
    "Roster",
    "Task",
    "TaskState",
    "WorkerType",
]
