"""The six phases of a run, in order."""

from __future__ import annotations

from enum import IntEnum


class Phase(IntEnum):
    """A run moves through these in order (a run taken over starts at ``execution``)."""

    preflight = 0
    activation = 1
    distribution = 2
    execution = 3
    aggregation = 4
    reporting = 5

    @property
    def description(self) -> str:
        """What happens in the phase, for people."""
        return _DESCRIPTIONS[self]


_DESCRIPTIONS = {
    Phase.preflight: "Pre-flight checks: Redis, nodes, budgets, catalog, model provider",
    Phase.activation: "Master activation: one process per master, registered and subscribed",
    Phase.distribution: "Worker distribution: worker processes started on their nodes, health-checked",
    Phase.execution: "Parallel execution: tasks released as dependencies finish",
    Phase.aggregation: "Aggregation: results merged per master, success criteria checked",
    Phase.reporting: "Reporting and cleanup: report, archive, processes and run keys cleaned up",
}
