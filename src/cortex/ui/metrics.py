"""``/metrics`` of the web view: the runs of the run index, for as long as the view lives, so a run shorter than a
scrape interval is still seen (its coordinator's own endpoint lives only as long as the run). One series per run
(``run_id`` label): its phase, tasks by master and state, tokens used per master, elapsed seconds; runs that
ended are kept for ``RECENT_S`` after their last update."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, generate_latest

RECENT_S = 600.0


def exposition(states: list[dict[str, Any]]) -> bytes:
    """The text format for ``states`` (run state documents)."""
    r = CollectorRegistry()
    info = Gauge(
        "cortex_run_status_info",
        "A run of the index and its status (value 1)",
        ["run_id", "plan_id", "status"],
        registry=r,
    )
    phase = Gauge("cortex_run_phase", "The run's phase (0-5)", ["run_id"], registry=r)
    tasks = Gauge("cortex_run_tasks", "The run's tasks by master and state", ["run_id", "master", "state"], registry=r)
    tokens = Gauge(
        "cortex_run_tokens_used", "Tokens the run used, by master (ledger)", ["run_id", "master"], registry=r
    )
    elapsed = Gauge("cortex_run_elapsed_seconds", "Seconds since the run started (to its end)", ["run_id"], registry=r)
    for s in states:
        run_id = s["run_id"]
        info.labels(run_id, s["plan_id"], s["status"].split(" ")[0]).set(1)
        phase.labels(run_id).set(s["phase"])
        for master, counts in s.get("tasks", {}).items():
            for state, n in counts.items():
                tasks.labels(run_id, master, state).set(n)
        for master, use in s.get("tokens", {}).items():
            if master != "run":
                tokens.labels(run_id, master).set(use["used"])
        elapsed.labels(run_id).set((s.get("finished_at") or time.time()) - s["started_at"])
    return generate_latest(r)
