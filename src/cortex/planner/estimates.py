"""Learned estimates: task durations and tokens from past runs, the roster's defaults only where none measured.

For each task, most specific first:

1. ``target``: the same task (its id names kind and target) in past runs: the median of its last ``PER_TARGET``
   measurements.
2. ``kind``: the kind on other targets: a Theil-Sen line (the median of pairwise slopes, then the median
   intercept) through duration against what the playbook says the kind ``scales_with`` (files, lines, tests,
   packages), evaluated at this target's measure; the median when the kind scales with nothing, or when the
   samples do not tell two sizes apart. Both are robust: one slow outlier moves neither.
3. ``default``: the roster's ``estimate_seconds`` and ``estimate_tokens``.

Every estimate states its basis, samples, spread (median absolute deviation) and a confidence that grows with
samples. Tasks a past run's handoffs admitted are expected again (``expected``) so the schedule counts them.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from cortex.models.history import RunHistory, TaskSample
from cortex.models.plan import ExpectedTask, PreviousRun, Target
from cortex.models.roster import Roster
from cortex.models.task import Estimate, EstimateBasis, Task

PER_TARGET = 5
"""Measurements of one task on one target kept: the latest, so a target that grew is re-learned quickly."""
PER_KIND = 60
"""Measurements of one kind across targets kept for scaling (the latest)."""


def confidence(samples: int) -> float:
    """``samples / (samples + 3)``, rounded: 0 without history, 0.5 from three measurements."""
    return round(samples / (samples + 3), 3)


def _mad(values: Sequence[float], centre: float) -> float:
    return statistics.median(abs(v - centre) for v in values) if len(values) > 1 else 0.0


def _theil_sen(points: list[tuple[float, float]]) -> tuple[float, float] | None:
    """(intercept, slope) of the Theil-Sen line through ``points``, or None when all x are equal."""
    slopes = [(y2 - y1) / (x2 - x1) for i, (x1, y1) in enumerate(points) for x2, y2 in points[i + 1 :] if x2 != x1]
    if not slopes:
        return None
    slope = statistics.median(slopes)
    return statistics.median(y - slope * x for x, y in points), slope


class Learner:
    """The samples of past runs, indexed for lookups by (kind, target) and by kind. ``runs``: newest first."""

    def __init__(self, runs: Sequence[RunHistory], roster: Roster) -> None:
        self.runs = list(runs)
        self.scales = {p.kind: p.scales_with for m in roster.masters for p in m.playbook}
        self.by_id: dict[str, list[TaskSample]] = {}
        self.by_kind: dict[str, list[TaskSample]] = {}
        self.handoffs: dict[str, tuple[str, list[TaskSample]]] = {}
        for run in self.runs:
            admitted: dict[str, list[TaskSample]] = {}
            for s in run.tasks:
                same = self.by_id.setdefault(s.id, [])
                if len(same) < PER_TARGET:
                    same.append(s)
                kind = self.by_kind.setdefault(s.kind, [])
                if len(kind) < PER_KIND:
                    kind.append(s)
                if s.source_task:
                    admitted.setdefault(s.source_task, []).append(s)
            for source, tasks in admitted.items():  # the latest run that ran the source task says what it admits
                self.handoffs.setdefault(source, (run.run_id, tasks))

    def estimate(self, task_id: str, kind: str, target: Target | None, default: Estimate) -> Estimate:
        """The estimate of task ``task_id`` (of ``kind``, on ``target``), from the most specific samples there
        are: the same task (its id names its target) first, then the kind."""
        same = self.by_id.get(task_id, [])
        if same:
            return self._median(same, "target")
        others = self.by_kind.get(kind, [])
        if not others:
            return default
        scale = self.scales.get(kind)
        measured = target.measures if target else None
        if scale is None or measured is None:
            return self._median(others, "kind")
        size = float(getattr(measured, scale))
        points = [(float(getattr(s.measures, scale)), s.duration_s) for s in others if s.measures is not None]
        line = _theil_sen(points) if len(points) >= 2 else None
        if line is None or line[1] < 0:  # one size only, or noise that says bigger is faster: the median
            return self._median(others, "kind")
        intercept, slope = line
        seconds = max(0.0, intercept + slope * size)
        fitted = [intercept + slope * x for x, _ in points]
        spread = statistics.median(abs(y - f) for (_, y), f in zip(points, fitted, strict=True))
        return Estimate(
            seconds=round(seconds, 3),
            tokens=round(statistics.median(s.tokens for s in others)),
            basis="kind",
            samples=len(points),
            spread_s=round(spread, 3),
            confidence=confidence(len(points)),
        )

    @staticmethod
    def _median(samples: list[TaskSample], basis: EstimateBasis) -> Estimate:
        durations = [s.duration_s for s in samples]
        centre = statistics.median(durations)
        return Estimate(
            seconds=round(centre, 3),
            tokens=round(statistics.median(s.tokens for s in samples)),
            basis=basis,
            samples=len(samples),
            spread_s=round(_mad(durations, centre), 3),
            confidence=confidence(len(samples)),
        )

    def learn(self, tasks: list[Task], targets: list[Target]) -> list[Task]:
        """``tasks`` with learned estimates (a task without samples keeps its default)."""
        by_name = {t.name: t for t in targets}
        out = []
        for t in tasks:
            est = self.estimate(t.id, t.kind, by_name.get(t.target or ""), t.estimate)
            out.append(t if est is t.estimate else t.model_copy(update={"estimate": est}))
        return out

    def expected(self, tasks: list[Task], targets: list[Target]) -> list[ExpectedTask]:
        """Tasks the latest runs' handoffs admitted after tasks this plan has too (same id), expected again."""
        by_name = {t.name: t for t in targets}
        planned = {t.id for t in tasks}
        out: dict[str, ExpectedTask] = {}
        for source in sorted(planned & self.handoffs.keys()):
            run_id, admitted = self.handoffs[source]
            for s in admitted:
                if s.id in planned or s.id in out:
                    continue
                default = Estimate(seconds=s.duration_s, tokens=s.tokens)
                out[s.id] = ExpectedTask(
                    id=s.id,
                    kind=s.kind,
                    master=s.master,
                    worker_type=s.worker_type,
                    target=s.target,
                    after=source,
                    estimate=self.estimate(s.id, s.kind, by_name.get(s.target or ""), default),
                    from_run=run_id,
                )
        return sorted(out.values(), key=lambda e: e.id)


def relative_error(estimate: float, measured: float) -> float | None:
    """(estimate - measured) / measured, or None when nothing measurable was measured."""
    return None if measured <= 0 else round((estimate - measured) / measured, 4)


def previous_run(runs: Sequence[RunHistory], goal: str, fleet: list[str]) -> PreviousRun | None:
    """How the latest plan for ``goal`` over the same ``fleet`` compared with its run (``runs`` newest first)."""
    for run in runs:
        if run.goal != goal or run.fleet != fleet or not run.measured_makespan_s:
            continue
        errors = [e for s in run.tasks if (e := relative_error(s.estimate_s, s.duration_s)) is not None]
        makespan = relative_error(run.estimated_makespan_s, run.measured_makespan_s)
        return PreviousRun(
            run_id=run.run_id,
            plan_id=run.plan_id,
            estimated_makespan_s=run.estimated_makespan_s,
            measured_makespan_s=run.measured_makespan_s,
            makespan_error=makespan or 0.0,
            task_median_error=round(statistics.median(abs(e) for e in errors), 4) if errors else None,
            tasks_compared=len(errors),
        )
    return None
