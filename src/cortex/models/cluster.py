"""The cluster a plan places work on: nodes with a role, capacity and labels."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator


class NodeRole(StrEnum):
    """Control-plane nodes host masters; worker nodes host workers."""

    control_plane = "control-plane"
    worker = "worker"


class Node(BaseModel):
    """One machine (or pod host) of the cluster."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    """DNS-style node name, unique in the cluster."""
    role: NodeRole
    cpu: float = Field(gt=0)
    """Cores available to Cortex on this node."""
    memory_mib: int = Field(gt=0)
    """Memory available to Cortex on this node, in MiB."""
    worker_slots: int = Field(ge=0)
    """How many worker processes the node may run at once."""
    labels: dict[str, str] = Field(default_factory=dict)


class Cluster(BaseModel):
    """Nodes of the cluster. Names are unique; at least one worker node has slots."""

    model_config = ConfigDict(extra="forbid")

    name: str
    nodes: list[Node] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_nodes(self) -> Cluster:
        names = [n.name for n in self.nodes]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"node names must be unique; repeated: {', '.join(duplicates)}")
        if not any(n.role is NodeRole.worker and n.worker_slots > 0 for n in self.nodes):
            raise ValueError("the cluster needs at least one worker node with worker_slots > 0")
        return self

    @property
    def worker_nodes(self) -> list[Node]:
        """Worker nodes in file order."""
        return [n for n in self.nodes if n.role is NodeRole.worker]

    @property
    def control_plane_nodes(self) -> list[Node]:
        """Control-plane nodes in file order (they host the masters)."""
        return [n for n in self.nodes if n.role is NodeRole.control_plane]


class NodeInfo(BaseModel):
    """A node agent as it registers itself in its pool (``cortex node``) and refreshes every heartbeat."""

    model_config = ConfigDict(extra="forbid")

    name: str
    pool: str
    host: str
    """Host name of the machine the agent runs on."""
    pid: int
    version: str
    """Cortex version of the agent."""
    slots: int = Field(ge=0)
    """How many worker processes the agent runs at once, over every run."""
    labels: dict[str, str] = Field(default_factory=dict)
    started_at: float
    draining: bool = False
    """The agent was asked to stop: it finishes what it runs and takes no new run."""
    runs: list[str] = Field(default_factory=list)
    """Runs it has processes of now."""
    workers: int = 0
    """Worker processes it runs now, over every run."""
    cpu_s: float = 0.0
    """CPU seconds of everything it started since it started, tool subprocesses included."""
    rss_mib: float = 0.0
    """Resident memory of everything it runs now, tool subprocesses included."""
