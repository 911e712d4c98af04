"""Routing a goal to masters: keyword scores with thresholds, written into the plan with their reasons."""

from __future__ import annotations

import re

from cortex.errors import InputError
from cortex.models.plan import RouteScore, RoutingDecision
from cortex.models.roster import Roster

_WORD = re.compile(r"[a-z0-9]+")


def _score(matches: int) -> float:
    """1 match scores 0.5, 2 score 0.75, 3 score 0.875: each further keyword halves the remaining doubt."""
    return round(1.0 - 0.5**matches, 4) if matches else 0.0


def route(goal: str, roster: Roster) -> RoutingDecision:
    """Score every master against the goal and decide: single expert, several in parallel, or fallback.

    A goal that asks for everything (``full``/``entire``/``all`` next to a word of the coordinator such as
    ``toolset`` or ``fleet``) selects every master.
    """
    words = _WORD.findall(goal.lower())
    if not words:
        raise InputError("goal", "the goal has no words", hint='say what to do, e.g. "audit security"')
    text = " ".join(words)
    cfg = roster.routing
    scores: list[RouteScore] = []
    for m in roster.masters:
        matched = sorted({k for k in m.keywords if re.search(rf"\b{re.escape(k.lower())}\b", text)})
        reason = f"matched {', '.join(matched)}" if matched else "no keyword matched"
        scores.append(RouteScore(master=m.name, score=_score(len(matched)), matched=matched, reason=reason))

    wants_all = sorted(set(words) & set(cfg.everything_keywords))
    fallback = next(s for s in scores if s.master == cfg.fallback)
    if wants_all and fallback.matched:
        mode, selected = "parallel", [m.name for m in roster.masters]
        why = f"goal asks for everything ({', '.join(wants_all + fallback.matched)})"
        scores = [s.model_copy(update={"reason": f"{s.reason}; {why}"}) for s in scores]
    else:
        ranked = sorted(scores, key=lambda s: (-s.score, s.master))
        above = [s.master for s in ranked if s.score >= cfg.parallel]
        if ranked[0].score >= cfg.single_expert and len(above) == 1:
            mode, selected = "single", above
        elif above:
            mode, selected = "parallel", above
        else:
            mode, selected = "fallback", [cfg.fallback]
    return RoutingDecision(
        mode=mode,
        selected=selected,
        scores=scores,
        single_expert_threshold=cfg.single_expert,
        parallel_threshold=cfg.parallel,
    )
