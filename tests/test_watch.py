"""How `cortex watch` prints a message for people: one line with time, channel, type, sender, receiver, task and
a brief of the content."""

from __future__ import annotations

from cortex.models.messages import Envelope, MessageType
from cortex.runtime.watch import Event, describe


def test_a_line_per_message_with_lists_and_tasks_in_brief() -> None:
    claim = Envelope(
        run_id="r",
        sender="scan-worker-01",
        to="scan-worker-01",
        type=MessageType.task,
        task_id="security.bandit:payments-api",
        context={"event": "assigned", "tasks": [{"task_id": "security.bandit:payments-api", "attempt": 1}]},
        ts=0.25,
    )
    line = describe(Event("cortex:worker:scan-worker-01", claim))
    assert line.endswith(
        "cortex:worker:scan-worker-01 task scan-worker-01->scan-worker-01 security.bandit:payments-api "
        "event=assigned tasks=security.bandit:payments-api"
    )
    assert line[:12].count(":") == 2 and line[8:12] == ".250"  # local time to the millisecond
    lineage = Envelope(
        run_id="r",
        sender="coordinator",
        to="all",
        type=MessageType.lineage,
        context={"recorded_in": "run", "tasks": [{"task": f"t{i}", "edges": [["a", "owns", "b"]]} for i in range(7)]},
    )
    assert describe(Event("cortex:lineage", lineage)).endswith("lineage coordinator->all recorded_in=run tasks=[7]")
    assert not Event("cortex:lineage", lineage).ends_run
    ended = Envelope(
        run_id="r", sender="coordinator", to="all", type=MessageType.control, context={"event": "run-ended"}
    )
    assert Event("cortex:master:coordinator", ended).ends_run
