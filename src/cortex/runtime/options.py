"""How a run is asked to go: what ``cortex run`` gathers from its options and ``CORTEX_*`` settings and hands the
coordinator, with the defaults a library caller gets."""

from __future__ import annotations

from dataclasses import dataclass, field

from cortex.coord.outage import DEFAULT_OUTAGE_S
from cortex.runtime.stalls import DEFAULT_STALL_S


@dataclass
class RunOptions:
    """Everything about a run but its plan, Redis and state directory."""

    model: str | None = None
    """``provider:model`` for tasks that need one; None skips them."""
    catalog_url: str | None = None
    catalog_token: str | None = None
    prices: dict[str, dict[str, float]] = field(default_factory=dict)
    """Model price table (``CORTEX_PRICES``) for the report's cost figures."""
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    connect_attempts: int = 5
    outage_s: float = DEFAULT_OUTAGE_S
    """How long a Redis outage is waited out before the run ends in error."""
    stall_s: float = DEFAULT_STALL_S
    pool: str | None = None
    """None: local mode (the coordinator starts a node agent per plan node); else the cluster pool to place on."""
    node_wait_s: float = 60.0
    """Cluster mode: how long to wait for the plan's nodes to register before re-placing or failing."""
    log_level: str = "info"
    """Level of the coordinator's structured log (``runs/<id>/logs/coordinator.jsonl``)."""
    reuse: bool = True
    """Reuse recorded results of tasks whose cache key matches (incremental runs); False: run everything."""
    grafana_url: str | None = None
    """Grafana whose annotations API gets each phase transition; None: none sent."""
    grafana_token: str | None = None
