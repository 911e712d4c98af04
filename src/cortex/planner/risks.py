"""The eight failure scenarios of the original design, as this runtime detects and recovers from them, and the
success criteria the report checks. The texts describe the code as it is; ``status`` says how far it goes."""

from __future__ import annotations

from cortex.models.plan import FailureScenario, SuccessCriterion

FAILURE_SCENARIOS: tuple[FailureScenario, ...] = (
    FailureScenario(
        id=1,
        name="Master crash",
        detection="The node supervisor sees the master process exit (non-zero or by signal).",
        recovery="The supervisor restarts it with exponential backoff and jitter, up to a restart cap. The master "
        "re-reads its pending inbox entries from its Redis consumer group, so dispatches in flight are not lost.",
        status="implemented",
    ),
    FailureScenario(
        id=2,
        name="Worker crash",
        detection="The worker's heartbeat key (a lease with a TTL) expires while it holds stream entries.",
        recovery="The coordinator's reaper claims the dead worker's pending entries (XPENDING/XCLAIM) and queues "
        "them again for a healthy worker of the same type; the supervisor restarts the worker. A late result from "
        "the dead attempt is counted as a duplicate and never applied. The report counts reassignments.",
        status="implemented",
    ),
    FailureScenario(
        id=3,
        name="Redis connectivity",
        detection="Connection errors or timeouts on any Redis call.",
        recovery="Every client retries with exponential backoff (redis-py Retry) through a bounded outage; the "
        "embedded server writes an append-only file so a restart keeps accepted tasks. Not yet proven by a chaos "
        "test (issue 6).",
        status="partial",
    ),
    FailureScenario(
        id=4,
        name="Node failure",
        detection="Every process of a node stops heart-beating.",
        recovery="The node's tasks are reclaimed and run on workers of the same type on other nodes. Recomputing "
        "the distribution and starting replacement workers elsewhere is not implemented yet (issue 6).",
        status="partial",
    ),
    FailureScenario(
        id=5,
        name="Catalog API down",
        detection="Catalog requests fail or time out.",
        recovery="Reads from the client's cache flagged stale, writes queued and replayed. Not implemented yet: "
        "the catalog service arrives with issue 3; pre-flight reports it as absent.",
        status="planned",
    ),
    FailureScenario(
        id=6,
        name="Token budget exhaustion",
        detection="A ledger reservation is refused because it would exceed the run, master or worker allocation.",
        recovery="The reservation fails atomically (Lua), so no level is ever overdrawn; handoffs are admitted "
        "only while the receiving master's budget allows. Degradation policies arrive with the LLM agents "
        "(issue 5).",
        status="partial",
    ),
    FailureScenario(
        id=7,
        name="Network partition / split brain",
        detection="The coordinator fails to renew its leadership lease before it expires.",
        recovery="One coordinator per run holds the lease with a fencing token; every task-state write carries "
        "the token and is refused by Redis when a newer token exists, so a coordinator that lost the lease steps "
        "down without writing.",
        status="implemented",
    ),
    FailureScenario(
        id=8,
        name="Concurrent access",
        detection="Two holders contend for the same resource (file, repository, catalog entry).",
        recovery="Fenced locks: a lease with a token from a monotonic counter; a write under the lock carries the "
        "token and is refused when a newer token exists, so an expired holder cannot write.",
        status="implemented",
    ),
)

SUCCESS_CRITERIA: tuple[SuccessCriterion, ...] = (
    SuccessCriterion(id="all-required-succeeded", description="Every non-optional task succeeded."),
    SuccessCriterion(id="no-lost-tasks", description="Every released task has exactly one recorded outcome."),
    SuccessCriterion(id="within-budget", description="Tokens used stay within every allocation of the ledger."),
    SuccessCriterion(id="masters-activated", description="Every planned master registered a heartbeat."),
    SuccessCriterion(id="workers-placed", description="Every planned worker started on its planned node."),
)
