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
            "cortex_node_failures_total", "Nodes whose supervisor died; their workers were moved", registry=r
        )
        self.tokens_used = Gauge("cortex_tokens_used", "Tokens used, from the ledger", ["master"], registry=r)
        self.tokens_remaining = Gauge(
            "cortex_tokens_remaining", "Tokens remaining, from the ledger", ["master"], registry=r
        )

    def serve(self, port: int, addr: str = "127.0.0.1") -> None:
        """Serve ``/metrics`` on ``addr:port`` from a background thread."""
        start_http_server(port, addr=addr, registry=self.registry)
