"""The eight failure scenarios of the original design, as this runtime detects and recovers from them, and the
success criteria the report checks. The texts describe the code as it is; ``status`` says how far it goes."""

from __future__ import annotations

from cortex.models.plan import FailureScenario, SuccessCriterion

FAILURE_SCENARIOS: tuple[FailureScenario, ...] = (
    FailureScenario(
        id=1,
        name="Master crash",
        detection="The node agent sees the master process exit (non-zero or by signal).",
        recovery="The node agent restarts it with exponential backoff and jitter, up to a restart cap. The master "
        "re-reads its pending inbox entries from its Redis consumer group, so dispatches in flight are not lost.",
        status="implemented",
    ),
    FailureScenario(
        id=2,
        name="Worker crash",
        detection="The worker process exits (its node agent sees it), or its heartbeat lease expires while it "
        "holds stream entries (stalled, paused, cut off).",
        recovery="A restarted worker first re-reads the entries it held; entries of a worker whose lease expired "
        "are requeued by the coordinator's reaper for a healthy worker of the same type. Both count as "
        "reassignments. Settling an entry and requeueing it race through one XACK, so a stalled worker that "
        "wakes up cannot settle it again, and a task's effects are applied once per run.",
        status="implemented",
    ),
    FailureScenario(
        id=3,
        name="Redis connectivity",
        detection="Connection errors or timeouts on any Redis call.",
        recovery="Every client retries with exponential backoff (redis-py Retry) through a bounded outage; "
        "heartbeats, node agents and the lease keeper ride it out. The embedded server writes an append-only file "
        "with fsync on every write, so a crash and restart keeps every accepted task.",
        status="implemented",
    ),
    FailureScenario(
        id=4,
        name="Node failure",
        detection="The node agent's heartbeat lease lapses (its host, process or network died), or the agent drained.",
        recovery="The coordinator moves the node's workers to healthy worker nodes with free slots (fewest "
        "workers first) through the placement hash; their node agents start them, and they take over the "
        "entries the dead workers held. worker-distribution.json shows each move; workers with no free slot "
        "anywhere are listed as such and their type carries on with the others.",
        status="implemented",
    ),
    FailureScenario(
        id=5,
        name="Catalog API down",
        detection="Catalog requests fail or time out.",
        recovery="Reads are served from each worker's cache and flagged stale; writes wait in a local queue and are "
        "replayed in order on the next write and at worker shutdown. Pre-flight reports the catalog reachable, "
        "degraded or absent.",
        status="implemented",
    ),
    FailureScenario(
        id=6,
        name="Token budget exhaustion",
        detection="A ledger reservation is refused because it would exceed the run, master or worker allocation; "
        "before that, a master's remaining budget falls below its roster policy's threshold.",
        recovery="Reservations are atomic (Lua), so no level is ever overdrawn. Below the threshold a master "
        "degrades as its roster policy says (a cheaper model, a smaller output limit, optional tasks skipped), "
        "and each step is recorded in the report. A reservation refused mid-task ends the task with what it has "
        "(partial) when the policy allows, else fails it without retry; reservations of holders that died are "
        "released at the end of the run.",
        status="implemented",
    ),
    FailureScenario(
        id=7,
        name="Network partition / split brain",
        detection="The coordinator fails to renew its leadership lease before it expires.",
        recovery="One coordinator per run holds the lease with a fencing token; task records, releases and result "
        "acknowledgements all follow a fenced write. Another coordinator (cortex takeover) takes the run over "
        "once the lease lapses and adopts its processes; the old one, if it comes back, finds its writes refused "
        "and steps down (exit 4) without touching the run.",
        status="implemented",
    ),
    FailureScenario(
        id=8,
        name="Concurrent access",
        detection="Two holders contend for the same resource (file, repository, catalog entry).",
        recovery="Fenced locks: a lease with a token from a monotonic counter; Redis writes under the lock carry "
        "the token and are refused when a newer one exists; a file write is made only after checking that the "
        "lease and token are still the newest, so an expired holder cannot write.",
        status="implemented",
    ),
)

SUCCESS_CRITERIA: tuple[SuccessCriterion, ...] = (
    SuccessCriterion(
        id="all-required-succeeded",
        description="Every non-optional planned task succeeded, and no task handed off at run time (a fix) failed.",
    ),
    SuccessCriterion(
        id="no-lost-tasks",
        description="Every task, planned or handed off, has exactly one recorded outcome, and every fix a task "
        "reported is on its branch (the branch's tip is the commit the report names).",
    ),
    SuccessCriterion(id="within-budget", description="Tokens used stay within every allocation of the ledger."),
    SuccessCriterion(
        id="ledger-settled",
        description="At the end nothing is still reserved and no call used more than it reserved: every account "
        "balances as allocated = used + remaining.",
    ),
    SuccessCriterion(id="masters-activated", description="Every planned master registered a heartbeat."),
    SuccessCriterion(id="workers-placed", description="Every planned worker started on its planned node."),
)
