"""Placement: masters on control-plane nodes, workers on worker nodes within their slots, balanced and spread."""

from __future__ import annotations

from collections import Counter

from cortex.errors import PlanError
from cortex.models.cluster import Cluster
from cortex.models.plan import MasterPlacement, WorkerAssignment
from cortex.models.roster import Roster


def place_masters(cluster: Cluster, masters: list[str]) -> list[MasterPlacement]:
    """Round-robin over control-plane nodes (over all nodes when the cluster has none)."""
    hosts = cluster.control_plane_nodes or cluster.nodes
    return [MasterPlacement(master=m, node=hosts[i % len(hosts)].name) for i, m in enumerate(masters)]


def place_workers(cluster: Cluster, roster: Roster, masters: list[str]) -> list[WorkerAssignment]:
    """Place every worker funded by an active master.

    Greedy, deterministic: types with more workers go first; each worker goes to the node with the fewest workers
    of its type, then the lowest load (workers over slots), then file order. That spreads same-type workers (a node
    failure takes out as few of one type as possible) and balances load; a node never exceeds its slots.
    """
    types = sorted(
        (w for w in roster.worker_types if w.master in masters and w.count > 0),
        key=lambda w: (-w.count, w.name),
    )
    needed = sum(w.count for w in types)
    nodes = [n for n in cluster.worker_nodes if n.worker_slots > 0]
    slots = sum(n.worker_slots for n in nodes)
    if needed > slots:
        raise PlanError(
            "cluster",
            f"{needed} workers do not fit in {slots} worker slots",
            field="nodes[*].worker_slots",
            hint="add worker nodes or slots, or lower worker counts in the roster",
        )
    load: Counter[str] = Counter()
    per_type: Counter[tuple[str, str]] = Counter()
    order = {n.name: i for i, n in enumerate(nodes)}
    placed: list[WorkerAssignment] = []
    for wt in types:
        for k in range(1, wt.count + 1):
            free = [n for n in nodes if load[n.name] < n.worker_slots]
            node = min(
                free,
                key=lambda n: (per_type[(n.name, wt.name)], load[n.name] / n.worker_slots, order[n.name]),
            )
            load[node.name] += 1
            per_type[(node.name, wt.name)] += 1
            placed.append(
                WorkerAssignment(
                    worker_id=f"{wt.name}-worker-{k:02d}",
                    worker_type=wt.name,
                    master=wt.master,
                    node=node.name,
                    budget=wt.budget,
                )
            )
    return sorted(placed, key=lambda w: (order[w.node], w.worker_id))
