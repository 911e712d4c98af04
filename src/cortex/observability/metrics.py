"""Prometheus metrics of a run, served on ``--metrics-port`` in the text format."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


class RunMetrics:
    """The metrics the coordinator updates as the run goes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.tasks = Counter(
            "cortex_tasks_total", "Tasks ended, by master and outcome", ["master", "outcome"], registry=r
        )
        self.duration = Histogram(
            "cortex_task_duration_seconds",
            "Measured task run time",
            ["master"],
            registry=r,
            buckets=(0.001, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 300),
        )
        self.queue_depth = Gauge(
            "cortex_queue_depth",
            "Tasks released and not yet finished, by worker type",
            ["worker_type"],
            registry=r,
        )
        self.workers_alive = Gauge("cortex_workers_alive", "Worker processes alive, by node", ["node"], registry=r)
        self.phase = Gauge("cortex_phase", "Current phase of the run (0-5)", registry=r)
        self.retries = Counter("cortex_retries_total", "Task attempts retried after a failure", registry=r)
        self.reassignments = Counter("cortex_reassignments_total", "Tasks reclaimed from dead workers", registry=r)
        self.token_efficiency = Gauge(
            "cortex_token_efficiency", "Tokens used over tokens allocated, from the ledger", ["master"], registry=r
        )
        self.node_failures = Counter(
            "cortex_node_failures_total",
            "Nodes whose agent stopped heartbeating; their processes were moved",
            registry=r,
        )
        self.tokens_used = Gauge("cortex_tokens_used", "Tokens used, from the ledger", ["master"], registry=r)
        self.tokens_remaining = Gauge(
            "cortex_tokens_remaining", "Tokens remaining, from the ledger", ["master"], registry=r
        )
        self.tokens_allocated = Gauge(
            "cortex_tokens_allocated", "Tokens allocated by the plan, from the ledger", ["master"], registry=r
        )
        self.worker_tokens_used = Gauge(
            "cortex_worker_tokens_used", "Tokens a worker used, from the ledger", ["worker"], registry=r
        )
        self.run_info = Gauge(
            "cortex_run_info", "The run this coordinator leads (value 1)", ["run_id", "plan_id"], registry=r
        )
        self.tasks_current = Gauge(
            "cortex_tasks_current", "Tasks by master and current state", ["master", "state"], registry=r
        )
        self.masters_alive = Gauge("cortex_masters_alive", "Master processes alive", registry=r)
        self.started = Gauge("cortex_run_started_timestamp_seconds", "When the run started", registry=r)
        self.planned_makespan = Gauge(
            "cortex_run_planned_makespan_seconds", "The plan's estimated makespan (an estimate)", registry=r
        )
        self.last_progress = Gauge(
            "cortex_run_last_progress_timestamp_seconds", "When a task last ended or was released", registry=r
        )
        self.conflicts = Gauge(
            "cortex_conflicts",
            "Contentions of the run by event (locks waited, fenced writes refused...)",
            ["event"],
            registry=r,
        )
        self.handoffs = Counter("cortex_handoffs_total", "Handoffs decided, by decision", ["decision"], registry=r)
        self.redis_up = Gauge(
            "cortex_redis_up", "1 while the coordinator reaches Redis, 0 during an outage", registry=r
        )

    def serve(self, port: int, addr: str = "127.0.0.1") -> None:
        """Serve ``/metrics`` on ``addr:port`` from a background thread."""
        start_http_server(port, addr=addr, registry=self.registry)
