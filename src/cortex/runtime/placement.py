"""Moving a run's processes between nodes: off a node that failed or drained (failure scenario 4), and, in cluster
mode, off the plan's nodes that never registered. One rule serves both.

Masters go to the live node hosting fewest masters, control-plane nodes (label ``role=control-plane``) first; they
take no worker slot. Workers go to the live node with the fewest of the run's workers that still has a free slot
(its agent's ``--slots``); a worker no node has room for is placed nowhere ("") and its type carries on with the
others.
"""

from __future__ import annotations

from collections import Counter

from cortex.models.cluster import NodeInfo
from cortex.models.report import WorkerMove


def is_master(process_id: str) -> bool:
    """Placement ids of masters are ``master-<name>``."""
    return process_id.startswith("master-")


def move_off(
    placement: dict[str, str], gone: set[str], live: dict[str, NodeInfo], *, reason: str, at: float
) -> tuple[dict[str, str], list[WorkerMove]]:
    """Where every process placed on a node in ``gone`` goes among ``live`` nodes: the changed entries of the
    placement and one move each. ``placement`` is not modified."""
    workers = Counter(n for p, n in placement.items() if n and not is_master(p) and n not in gone)
    masters = Counter(n for p, n in placement.items() if n and is_master(p) and n not in gone)
    changed: dict[str, str] = {}
    moves = []
    for pid in sorted(p for p, n in placement.items() if n in gone):
        to: str | None
        if is_master(pid):
            ranked = sorted(live, key=lambda n: (live[n].labels.get("role") != "control-plane", masters[n], n))
            to = ranked[0] if ranked else None
            if to:
                masters[to] += 1
        else:
            free = sorted((workers[n], n) for n in live if workers[n] < live[n].slots)
            to = free[0][1] if free else None
            if to:
                workers[to] += 1
        changed[pid] = to or ""
        moves.append(WorkerMove(worker=pid, from_node=placement[pid], to=to, at=at, reason=reason))
    return changed, moves
