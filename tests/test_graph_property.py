"""The task graph cannot break: over random graphs, failures, skips, retries, duplicates and handoffs, every task
reaches exactly one terminal state, is released only when its dependencies allow it, and makes no illegal move
(``TaskRecord.move`` raises ``IllegalTransition`` on one)."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cortex.models.result import Outcome, TaskResult
from cortex.models.task import Estimate, RetryPolicy, Task, TaskState
from cortex.runtime.graphrun import Changes, GraphRun
from cortex.runtime.records import TaskRecord

pytestmark = pytest.mark.timeout(120)


def _task(task_id: str, deps: list[str], **kw: object) -> Task:
    return Task(
        id=task_id,
        master="m",
        kind="builtin.noop",
        worker_type="w",
        depends_on=deps,
        estimate=Estimate(seconds=1, tokens=0),
        **kw,
    )  # type: ignore[arg-type]


@st.composite
def graphs(draw: st.DrawFn) -> list[Task]:
    """A random DAG (edges only point back), each task needing success or completion, some needing a model, and
    sometimes an aggregation that waits for everything (``after_all``), handoffs included."""
    n = draw(st.integers(1, 10))
    tasks = []
    for i in range(n):
        deps = draw(st.lists(st.integers(0, i - 1), unique=True, max_size=3)) if i else []
        tasks.append(
            _task(
                f"t{i}",
                [f"t{d}" for d in deps],
                needs=draw(st.sampled_from(["success", "completion"])),
                requires_model=draw(st.booleans()) and draw(st.booleans()),  # one in four
            )
        )
    if draw(st.booleans()):
        tasks.append(_task("aggregate", [t.id for t in tasks], needs="completion", after_all=True))
    return tasks


def _check_release(g: GraphRun, rec: TaskRecord) -> None:
    parents = [g.records[p] for p in rec.task.depends_on]
    assert all(p.state.terminal for p in parents), f"{rec.task.id} released before its dependencies ended"
    if rec.task.needs == "success":
        assert all(p.state is TaskState.succeeded for p in parents), f"{rec.task.id} released after a failure"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tasks=graphs(), model=st.booleans(), attempts=st.integers(1, 3), data=st.data())
def test_every_task_ends_exactly_once_and_no_move_is_illegal(
    tasks: list[Task], model: bool, attempts: int, data: st.DataObject
) -> None:
    g = GraphRun(tasks, RetryPolicy(max_attempts=attempts), model_configured=model, seed=1)
    ended: Counter[str] = Counter()
    retrying: list[str] = []
    handoffs = 0

    def take(changes: Changes) -> None:
        ended.update(r.task.id for r in changes.ended)

    take(g.initial())
    for _ in range(2000):
        if g.done:
            break
        for rec in list(g.ready.values()):  # what the dispatcher does with a turn's releases
            _check_release(g, rec)
            g.mark_released(rec, 0.0)
        released = sorted(r.task.id for r in g.records.values() if r.state is TaskState.released)
        if not released:
            assert retrying, "nothing running, nothing waiting to retry, yet the graph is not done"
            g.retry_due(retrying.pop(0))
            continue
        _check_counts(g, set(released[:1]))  # a worker holds the first released task
        rec = g.records[data.draw(st.sampled_from(released), label="task")]
        if data.draw(st.booleans(), label="stale result first"):  # a result of another attempt
            stale = TaskResult(
                task_id=rec.task.id,
                attempt=rec.attempt + 1,
                outcome=Outcome.succeeded,
                worker="w",
                started=0,
                finished=1,
            )
            assert g.apply(stale, 0.0).duplicate
        outcome = data.draw(st.sampled_from([Outcome.succeeded, Outcome.failed, Outcome.skipped]), label="outcome")
        retryable = data.draw(st.booleans(), label="retryable")
        result = TaskResult(
            task_id=rec.task.id,
            attempt=rec.attempt,
            outcome=outcome,
            worker="w",
            started=0,
            finished=1,
            error="" if outcome is Outcome.succeeded else "boom",
            retryable=retryable,
        )
        changes = g.apply(result, 0.0)
        assert not changes.duplicate
        if changes.retry_at is not None:
            retrying.append(rec.task.id)
        take(changes)
        assert g.apply(result, 0.0).duplicate  # the same result again changes nothing
        if outcome is Outcome.succeeded and handoffs < 3 and data.draw(st.booleans(), label="handoff"):
            handoffs += 1
            needs_model = data.draw(st.booleans(), label="handoff needs a model")
            take(g.admit(_task(f"h{handoffs}", [], requires_model=needs_model, origin="handoff:m")))
    assert g.done, "the run never ended"
    assert all(r.state.terminal for r in g.records.values())
    assert ended == Counter(g.records.keys()), "a task ended more than once, or never"
    assert not g.ready
    _check_counts(g, set())


def _check_counts(g: GraphRun, running: set[str]) -> None:
    """The counts the graph keeps as tasks move (what the live state and gauges read) are what a count of every
    record gives, and so is the list of tasks with failed attempts."""
    expected: dict[str, Counter[str]] = {}
    for r in g.records.values():
        expected.setdefault(r.task.master, Counter())["running" if r.task.id in running else r.state.value] += 1
    assert g.tally(running) == {m: dict(c) for m, c in expected.items()}
    assert set(g.erred) == {r.task.id for r in g.records.values() if r.errors}
    released = Counter(r.task.worker_type for r in g.records.values() if r.state is TaskState.released)
    assert {k: n for k, n in g.released_by_type().items() if n} == dict(released)


def test_a_failed_last_parent_releases_the_aggregation_once() -> None:
    """The crash the kill loop found: the failing discovery skips its audit, whose skip readies the aggregation,
    which also depends on the discovery directly; it used to be released twice (``released -> released``)."""
    tasks = [
        _task("discover", []),
        _task("audit", ["discover"]),
        _task("aggregate", ["discover", "audit"], needs="completion", after_all=True),
    ]
    g = GraphRun(tasks, RetryPolicy(max_attempts=1), model_configured=False)
    (discover,) = g.initial().release
    g.mark_released(discover, 0.0)
    failed = TaskResult(
        task_id="discover", attempt=1, outcome=Outcome.failed, worker="w", started=0, finished=1, error="bad manifest"
    )
    changes = g.apply(failed, 0.0)
    assert [r.task.id for r in changes.release] == ["aggregate"]
    for rec in changes.release:
        g.mark_released(rec, 0.0)
    assert g.records["aggregate"].state is TaskState.released
