"""Every Redis key and channel name Cortex uses. Nothing else builds key strings.

A run's keys live under ``cortex:run:{run_id}:``. The channels are the original design's five; they are shared by
every run on the server, so each message carries its ``run_id`` and receivers filter on it. What goes on which
channel is in ``docs/architecture.md`` ("Channels").
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "cortex"
CH_COORDINATOR = f"{PREFIX}:master:coordinator"
"""System-wide broadcasts: phases, node failures, reassignments, the end of a run."""
CH_LINEAGE = f"{PREFIX}:lineage"
"""Every lineage edge as it is recorded, with the task, worker and master that produced it."""
CH_CONFLICTS = f"{PREFIX}:conflicts"
"""Every contention and how it was resolved: fenced writes refused, locks waited on, duplicates ignored."""
MASTER_CHANNELS = f"{PREFIX}:master:*"
"""Pattern of every master's channel (the coordinator's included)."""
WORKER_CHANNELS = f"{PREFIX}:worker:*"
"""Pattern of every worker's channel."""
RUNS = f"{PREFIX}:runs"
"""Sorted set of run ids by start time."""
RUN_INDEX_TTL_S = 30 * 24 * 3600
"""How long a finished run's entry in the run index stays in Redis (its archive stays on disk for good)."""
HISTORY = f"{PREFIX}:history"
"""Hash of finished runs' estimate samples (run id -> ``RunHistory`` JSON): what plans learn from in cluster mode."""
HISTORY_ORDER = f"{PREFIX}:history:runs"
"""Sorted set of the run ids in ``HISTORY`` by finish time; the oldest beyond ``HISTORY_KEEP`` are dropped."""
HISTORY_KEEP = 200
CACHE = f"{PREFIX}:cache"
"""Hash of recorded task results (cache key -> ``CacheEntry`` JSON): what incremental runs reuse in cluster mode."""
CACHE_ORDER = f"{PREFIX}:cache:keys"
"""Sorted set of the keys in ``CACHE`` by when they were recorded; the oldest beyond ``CACHE_KEEP`` are dropped."""
CACHE_KEEP = 50_000
FENCE_COUNTER = f"{PREFIX}:fence"
"""Monotonic counter every fencing token comes from."""


def run_index(run_id: str) -> str:
    """Hash of what any host may read of run ``run_id``, live and after its end: ``current`` (the live state
    document), ``report_json`` and ``report_md``. It outlives the run's own keys (``RUN_INDEX_TTL_S``)."""
    return f"{PREFIX}:index:{run_id}"


def master_channel(name: str) -> str:
    """The pub/sub channel of master ``name``."""
    return f"{PREFIX}:master:{name}"


def worker_channel(worker_id: str) -> str:
    """The pub/sub channel of worker ``worker_id``."""
    return f"{PREFIX}:worker:{worker_id}"


def lock_key(resource: str) -> str:
    """The lease key of a fenced lock on ``resource``."""
    return f"{PREFIX}:lock:{resource}"


def leader_resource(run_id: str) -> str:
    """The fenced resource whose lease makes a coordinator the leader of run ``run_id``."""
    return f"run:{run_id}:leader"


def fence_key(resource: str) -> str:
    """The newest fencing token accepted for writes to ``resource``."""
    return f"{PREFIX}:fenced:{resource}"


@dataclass(frozen=True)
class RunKeys:
    """Keys of one run."""

    run_id: str

    @property
    def base(self) -> str:
        """Prefix of every key of the run."""
        return f"{PREFIX}:run:{self.run_id}"

    @property
    def plan(self) -> str:
        """The plan JSON the processes read at start."""
        return f"{self.base}:plan"

    @property
    def events(self) -> str:
        """Stream of every event of the run (what the archive keeps)."""
        return f"{self.base}:events"

    def inbox(self, master: str) -> str:
        """Stream of tasks released to ``master``."""
        return f"{self.base}:inbox:{master}"

    def queue(self, worker_type: str) -> str:
        """Stream of tasks for workers of ``worker_type``."""
        return f"{self.base}:queue:{worker_type}"

    @property
    def results(self) -> str:
        """Stream of task results from every worker."""
        return f"{self.base}:results"

    @property
    def tasks(self) -> str:
        """Hash task id -> task record JSON, written only by the leading coordinator (fenced)."""
        return f"{self.base}:tasks"

    @property
    def running(self) -> str:
        """Hash task id -> worker id of tasks a worker has started and not finished."""
        return f"{self.base}:running"

    @property
    def claimed_at(self) -> str:
        """Hash task id -> when a worker last claimed it (Unix seconds): how long a running task has been at it
        (deleted with the task's entry in ``running``)."""
        return f"{self.base}:claimed-at"

    @property
    def executions(self) -> str:
        """Hash task id -> how many times a worker started it, every attempt counted (a killed one included)."""
        return f"{self.base}:executions"

    @property
    def committed(self) -> str:
        """Hash task id -> entry id of the delivery whose success applied the task's effects (once per run)."""
        return f"{self.base}:committed"

    @property
    def release_next(self) -> str:
        """Hash task id -> JSON list of the dependents its first successful settle may release (``release_*``: the
        coordinator arms them when it releases the task; ``coord.delivery``'s settle releases them)."""
        return f"{self.base}:release:next"

    @property
    def release_waits(self) -> str:
        """Hash task id -> how many of its dependencies have yet to settle a success before a settle releases it."""
        return f"{self.base}:release:waits"

    @property
    def release_entry(self) -> str:
        """Hash task id -> JSON list: its master, worker type, priority, inbox, queue, then its entry's fields."""
        return f"{self.base}:release:entry"

    def heartbeat(self, process_id: str) -> str:
        """Lease key a live master or worker keeps refreshing."""
        return f"{self.base}:hb:{process_id}"

    @property
    def processes(self) -> str:
        """Hash process id -> status JSON (node, pid, restarts), written by node agents."""
        return f"{self.base}:processes"

    @property
    def placement(self) -> str:
        """Hash process id (``master-<name>`` or a worker id) -> node: where every process of the run runs now,
        written by the coordinator at start and when a node fails ("" for a worker no node had a slot for). Node
        agents start and stop their processes from it."""
        return f"{self.base}:placement"

    @property
    def settings(self) -> str:
        """Hash of what node agents need to start the run's processes: ``pool``, ``model``, ``catalog_url``
        (never a secret: tokens and keys come from each node's own environment)."""
        return f"{self.base}:settings"

    @property
    def nodes(self) -> str:
        """Hash node -> measured usage JSON (CPU seconds, peak RSS), written by the node agents."""
        return f"{self.base}:nodes"

    @property
    def coordinator(self) -> str:
        """Hash with the leading coordinator's run-level counters (fenced), read by a coordinator taking over, and
        the mark of its last release script (``released``: did the script in flight in an outage run)."""
        return f"{self.base}:coordinator"

    @property
    def control(self) -> str:
        """Hash process id -> the standing control command (drain), so a process that missed the message on its
        channel, or restarted, still obeys it."""
        return f"{self.base}:control"

    @property
    def stop(self) -> str:
        """Set when the run ends: every node agent stops the run's processes."""
        return f"{self.base}:stop"

    def ledger(self, level: str) -> str:
        """Hash allocated/used/reserved of a ledger account (``run``, ``master:x``, ``worker:y``)."""
        return f"{self.base}:ledger:{level}"

    @property
    def model_usage(self) -> str:
        """Hash ``master|model|input|output|calls`` -> counts of the run's model calls (cost from the price table)."""
        return f"{self.base}:model-usage"

    @property
    def conflicts(self) -> str:
        """Hash conflict event (``lock-waited``, ``fenced-write-refused``...) -> how many the run had, counted as each
        is published on the conflicts channel."""
        return f"{self.base}:conflicts"

    @property
    def token_log(self) -> str:
        """List of JSON records, one per model call: when, which master and worker, how many tokens (the report's
        burn-down)."""
        return f"{self.base}:token-log"

    @property
    def degradations(self) -> str:
        """List of JSON records: each step a budget policy took, when and why."""
        return f"{self.base}:degradations"

    @property
    def aggregate(self) -> str:
        """Hash of aggregated results per master (written by the aggregation task)."""
        return f"{self.base}:aggregate"

    def pattern(self) -> str:
        """Glob matching every key of the run, for cleanup."""
        return f"{self.base}:*"


@dataclass(frozen=True)
class PoolKeys:
    """Keys of a pool of node agents (``cortex node --pool``). A run's coordinator places processes on the live
    nodes of one pool; local mode uses a pool of its own per run."""

    pool: str

    @property
    def base(self) -> str:
        """Prefix of every key of the pool."""
        return f"{PREFIX}:pool:{self.pool}"

    @property
    def nodes(self) -> str:
        """Hash node name -> ``NodeInfo`` JSON (capacity, labels, host, version, usage), written by each agent."""
        return f"{self.base}:nodes"

    def heartbeat(self, node: str) -> str:
        """Lease key a live node agent keeps refreshing; gone means the node failed or drained."""
        return f"{self.base}:node:{node}:hb"

    def runs(self, node: str) -> str:
        """Set of run ids that have processes placed on ``node`` (added by coordinators, removed by the agent)."""
        return f"{self.base}:node:{node}:runs"


GROUP_MASTERS = "masters"
GROUP_WORKERS = "workers"
GROUP_COORDINATOR = "coordinator"


@dataclass(frozen=True)
class CatalogKeys:
    """Keys of the catalog (shared by every run). ``prefix`` lets tests and benchmarks use separate catalogs."""

    prefix: str = f"{PREFIX}:catalog"

    def asset(self, asset_id: str) -> str:
        """JSON of one asset."""
        return f"{self.prefix}:asset:{asset_id}"

    def meta(self, asset_id: str) -> str:
        """Hash of the index memberships of one asset (what to remove on the next change)."""
        return f"{self.prefix}:meta:{asset_id}"

    def index(self, kind: str, value: str) -> str:
        """Set of asset ids with ``kind`` (type, owner, namespace, tag, health, word) equal to ``value``."""
        return f"{self.prefix}:idx:{kind}:{value}"

    def values(self, kind: str) -> str:
        """Set of the values of ``kind`` that have at least one asset (for stats)."""
        return f"{self.prefix}:vals:{kind}"

    @property
    def edges(self) -> str:
        """Counter of lineage edges."""
        return f"{self.prefix}:edges"

    @property
    def all(self) -> str:
        """Sorted set of every asset id (score 0: ordered by id, for cursor pagination)."""
        return f"{self.prefix}:all"

    @property
    def updated(self) -> str:
        """Sorted set of asset ids by last update time."""
        return f"{self.prefix}:updated"

    def downstream(self, asset_id: str) -> str:
        """Set of ``relation|downstream`` of an asset."""
        return f"{self.prefix}:down:{asset_id}"

    def upstream(self, asset_id: str) -> str:
        """Set of ``relation|upstream`` of an asset."""
        return f"{self.prefix}:up:{asset_id}"

    def edge(self, upstream: str, relation: str, downstream: str) -> str:
        """JSON of one lineage edge (with its provenance)."""
        return f"{self.prefix}:edge:{upstream}|{relation}|{downstream}"

    @property
    def events(self) -> str:
        """Stream of catalog changes."""
        return f"{self.prefix}:events"

    @property
    def channel(self) -> str:
        """Pub/sub channel of catalog changes."""
        return f"{self.prefix}:changes"

    @property
    def last_discovery(self) -> str:
        """When the last discovery pass ended (Unix seconds): what the catalog's staleness alert reads."""
        return f"{self.prefix}:last-discovery"

    @property
    def checksums(self) -> str:
        """Hash of discovered file path -> checksum (incremental discovery)."""
        return f"{self.prefix}:checksums"

    @property
    def sources(self) -> str:
        """Hash of discovered file path -> JSON list of the asset ids it produced."""
        return f"{self.prefix}:sources"
