"""Run-time task graph rules: release order, retries with backoff, skips, duplicates, needs=completion."""

from __future__ import annotations

import json
import random

from cortex.models.handoff import Handoff
from cortex.models.report import StoredTaskRecord
from cortex.models.result import Outcome, TaskResult
from cortex.models.task import Estimate, RetryPolicy, Task, TaskState
from cortex.runtime.graphrun import Changes, GraphRun, backoff_delay
from cortex.runtime.records import TaskRecord


def _t(task_id: str, deps: list[str] | None = None, **kw: object) -> Task:
    return Task(
        id=task_id,
        master="m",
        kind="builtin.noop",
        worker_type="w",
        depends_on=deps or [],
        estimate=Estimate(seconds=1, tokens=0),
        **kw,
    )  # type: ignore[arg-type]


def _result(task_id: str, attempt: int, outcome: Outcome, **kw: object) -> TaskResult:
    fields: dict[str, object] = {"worker": "w1", "started": 1.0, "finished": 2.0, "error": "", **kw}
    return TaskResult(task_id=task_id, attempt=attempt, outcome=outcome, **fields)  # type: ignore[arg-type]


def _finish(g: GraphRun, task_id: str, ok: bool, *, retryable: bool = True) -> Changes:
    outcome = Outcome.succeeded if ok else Outcome.failed
    result = _result(task_id, g.records[task_id].attempt, outcome, error="" if ok else "boom", retryable=retryable)
    return g.apply(result, now=0.0)


def _release(g: GraphRun, recs) -> list[str]:  # type: ignore[no-untyped-def]
    for r in recs:
        g.mark_released(r, 0.0)
    return [r.task.id for r in recs]


def test_dependents_are_released_only_when_all_dependencies_succeed() -> None:
    g = GraphRun([_t("a"), _t("b"), _t("c", ["a", "b"])], RetryPolicy(), model_configured=True)
    assert _release(g, g.initial().release) == ["a", "b"]
    assert _finish(g, "a", True).release == []
    assert _release(g, _finish(g, "b", True).release) == ["c"]
    _finish(g, "c", True)
    assert g.done


def test_failed_attempt_is_retried_until_max_attempts_then_fails_and_skips_dependents() -> None:
    g = GraphRun([_t("a"), _t("b", ["a"]), _t("x")], RetryPolicy(max_attempts=2), model_configured=True)
    _release(g, g.initial().release)
    first = _finish(g, "a", False)
    assert first.retry_at is not None and g.records["a"].state is TaskState.retrying
    _release(g, [g.records["a"]])
    second = _finish(g, "a", False)
    assert g.records["a"].state is TaskState.failed and g.records["a"].attempt == 2
    assert [r.task.id for r in second.ended] == ["a", "b"]
    assert g.records["b"].state is TaskState.skipped and "dependency a failed" in (g.records["b"].reason or "")
    assert g.records["x"].state is TaskState.released  # unrelated work goes on
    assert g.retries == 1


def test_non_retryable_failure_fails_at_once() -> None:
    g = GraphRun([_t("a")], RetryPolicy(max_attempts=5), model_configured=True)
    _release(g, g.initial().release)
    _finish(g, "a", False, retryable=False)
    assert g.records["a"].state is TaskState.failed


def test_late_duplicate_result_is_counted_and_not_applied() -> None:
    g = GraphRun([_t("a")], RetryPolicy(), model_configured=True)
    _release(g, g.initial().release)
    _finish(g, "a", True)
    again = g.apply(_result("a", 1, Outcome.failed, worker="w2", started=3, finished=4, error="late"), now=0)
    assert again.duplicate and g.duplicates == 1
    assert g.records["a"].state is TaskState.succeeded and g.records["a"].worker == "w1"


def test_completion_dependents_run_after_failures_and_model_tasks_are_skipped_without_a_model() -> None:
    tasks = [_t("a"), _t("llm", requires_model=True), _t("agg", ["a", "llm"], needs="completion")]
    g = GraphRun(tasks, RetryPolicy(max_attempts=1), model_configured=False)
    out = g.initial()
    assert [r.task.id for r in out.release] == ["a"]
    assert g.records["llm"].state is TaskState.skipped and "no model configured" in (g.records["llm"].reason or "")
    _release(g, out.release)
    assert _release(g, _finish(g, "a", False).release) == ["agg"]


def test_backoff_grows_exponentially_within_jitter_and_cap() -> None:
    policy = RetryPolicy(backoff_base_s=1, backoff_max_s=5, jitter=0.25)
    rng = random.Random(1)
    for attempt, nominal in [(1, 1), (2, 2), (3, 4), (4, 5), (9, 5)]:
        delay = backoff_delay(policy, attempt, rng)
        assert nominal * 0.75 <= delay <= nominal * 1.25


def test_a_handler_skip_ends_the_task_skipped_with_its_reason_and_settles_dependents() -> None:
    g = GraphRun([_t("a"), _t("b", ["a"])], RetryPolicy(max_attempts=3), model_configured=True)
    _release(g, g.initial().release)
    rec = g.records["a"]
    out = g.apply(_result("a", rec.attempt, Outcome.skipped, error="npm not here", retryable=False), now=0)
    assert rec.state is TaskState.skipped and rec.reason == "npm not here" and g.retries == 0
    assert [r.task.id for r in out.ended] == ["a", "b"]  # b needed a to succeed


def test_a_handoff_admitted_as_the_aggregation_becomes_ready_is_waited_for() -> None:
    agg = _t("agg", ["a"], needs="completion", after_all=True)
    g = GraphRun([_t("a"), agg], RetryPolicy(), model_configured=True)
    _release(g, g.initial().release)
    ready = _finish(g, "a", True).release
    assert [r.task.id for r in ready] == ["agg"]  # ready, not yet sent...
    _release(g, g.admit(_t("fix")).release)  # ...when a's result hands work over
    assert g.waiting(g.records["agg"]) and "fix" in g.records["agg"].task.depends_on
    assert [r.task.id for r in _finish(g, "fix", True).release] == ["agg"]  # released once the handoff ended


def test_a_record_stored_as_json_comes_back_whole_and_a_replaced_task_is_serialised_again() -> None:
    """What a coordinator taking over reads back (``StoredTaskRecord``) is the record as it was: state, attempts,
    times, every error, output, handoffs and latencies; the task's cached JSON follows a replaced task."""
    g = GraphRun([_t("a", params={"path": "x"}), _t("agg", ["a"])], RetryPolicy(max_attempts=3), model_configured=True)
    _release(g, g.initial().release)
    _finish(g, "a", False)
    g.retry_due("a")
    _release(g, list(g.ready.values()))
    handoff = Handoff(to="development", kind="development.bump-pin", worker_type="developer", key="flask", params={})
    g.apply(_result("a", 2, Outcome.succeeded, output={"n": 3, "names": ["é", "b"]}, handoffs=[handoff]), now=0.0)
    rec = g.records["a"]
    rec.handoffs, rec.dispatch_latency_s = [handoff], [0.25, 0.5]
    back = TaskRecord.from_json(rec.to_json())
    stored = json.loads(rec.to_json())
    model = StoredTaskRecord.model_validate_json(rec.to_json())
    assert stored == json.loads(model.model_dump_json(by_alias=True, exclude_unset=True))  # every field, as typed
    assert {k: stored[k] for k in ("id", "master", "kind", "estimate_s", "attempts")} == {
        "id": "a", "master": rec.task.master, "kind": rec.task.kind, "estimate_s": rec.task.estimate.seconds,
        "attempts": 2,
    }  # fmt: skip
    assert (back.state, back.attempt, back.errors, back.output) == (TaskState.succeeded, 2, ["boom"], rec.output)
    assert (back.handoffs, back.dispatch_latency_s, back.task) == ([handoff], [0.25, 0.5], rec.task)
    assert (back.started_at, back.finished_at, back.worker) == (1.0, 2.0, "w1")
    agg = g.records["agg"]
    before = agg.task_json()
    agg.task = agg.task.model_copy(update={"depends_on": ["a", "h1"]})
    assert before != agg.task_json() and TaskRecord.from_json(agg.to_json()).task.depends_on == ["a", "h1"]


def test_a_settle_may_release_pending_dependents_the_coordinator_would_not_decide_otherwise() -> None:
    tasks = [
        _t("a"),
        _t("b", ["a"], priority=1),
        _t("c", ["a"]),
        _t("llm", ["a"], requires_model=True),
        _t("all", ["a", "b", "c", "llm"], after_all=True),
    ]
    g = GraphRun(tasks, RetryPolicy(), model_configured=False)
    assert g.settle_releasable("a") == ["b", "c"]  # most urgent first; not the model task, not the closing one
    _release(g, g.initial().release)
    rec = g.released_by_settle("b", 5.0)
    assert rec is not None and (rec.state, rec.attempt, rec.released_at) == (TaskState.released, 1, 5.0)
    assert g.settle_releasable("a") == ["c"]  # b is no longer pending
    # a's result (after the settle that released b) does not release b again
    assert [r.task.id for r in _finish(g, "a", True).release] == ["c"]
    assert g.released_by_settle("b", 6.0) is None and g.records["b"].attempt == 1  # not pending: nothing moves
