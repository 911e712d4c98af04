"""What the web view shows, read from Redis: the run index (every run, live or finished, with its plan and report),
a live run's task records, event stream and nodes, and the catalog. Nothing here writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import redis.asyncio as aredis

from cortex.coord.keys import PoolKeys, RunKeys, run_index
from cortex.errors import RunNotFound
from cortex.models.cluster import NodeInfo
from cortex.models.plan import ScheduledTask
from cortex.runtime import runindex

EVENTS_SHOWN = 200


async def _states(redis: aredis.Redis, limit: int) -> list[dict[str, Any]]:
    """The state documents of the latest ``limit`` runs in the index, newest first."""
    return [s.model_dump(mode="json") for s in await runindex.history(redis, limit)]


async def runs(redis: aredis.Redis, *, status: str | None = None, text: str | None = None) -> list[dict[str, Any]]:
    """The indexed runs, newest first, as rows (status, goal, duration, tasks, tokens, started), filtered."""
    out = []
    for s in await _states(redis, 500):
        tasks = sum(sum(c.values()) for c in s.get("tasks", {}).values())
        row = {
            "run_id": s["run_id"],
            "status": s["status"],
            "goal": s["goal"],
            "started_at": s["started_at"],
            "duration_s": round((s.get("finished_at") or s["updated_at"]) - s["started_at"], 1),
            "tasks": tasks,
            "tokens": (s.get("tokens", {}).get("run") or {}).get("used", 0),
        }
        if status and not row["status"].startswith(status):
            continue
        if text and text.lower() not in (row["goal"] + " " + row["run_id"]).lower():
            continue
        out.append(row)
    return out


async def run(redis: aredis.Redis, run_id: str) -> dict[str, Any]:
    """Everything the run page draws: the live state, the tasks (live records, or the report's), the plan's
    schedule and budgets, the nodes of its pool, and the report once there is one."""
    key = run_index(run_id)
    current, plan_json, report_json = await redis.hmget(key, ["current", "plan", "report_json"])
    if current is None:
        raise RunNotFound(f"no run {run_id!r} in this Redis")
    report = json.loads(report_json) if report_json else None
    plan = json.loads(plan_json) if plan_json else None
    keys = RunKeys(run_id)
    if report is not None:
        tasks = report["tasks"]
    else:
        tasks = [_task(json.loads(v)) for v in (await redis.hgetall(keys.tasks)).values()]
    pool = await redis.hget(keys.settings, "pool")
    return {
        "state": json.loads(current),
        "tasks": sorted(tasks, key=lambda t: t["id"]),
        "plan": _plan_view(plan),
        "nodes": await nodes(redis, pool) if pool else [],
        "processes": list(report["processes"].values()) if report else await processes(redis, keys),
        "report": report,
    }


async def processes(redis: aredis.Redis, keys: RunKeys) -> list[dict[str, Any]]:
    """The run's masters and workers as their agents report them, alive only with a live heartbeat."""
    raw = await redis.hgetall(keys.processes)
    out = []
    for process_id, v in sorted(raw.items()):
        p = json.loads(v)
        p["alive"] = bool(p.get("alive") and await redis.exists(keys.heartbeat(process_id)))
        out.append(p)
    return out


def _task(record: dict[str, Any]) -> dict[str, Any]:
    """A live task record (``StoredTaskRecord``) in the report's shape: without the whole task and latencies."""
    return {k: v for k, v in record.items() if k not in ("task", "dispatch_latency_s")}


def _plan_view(plan: dict[str, Any] | None) -> dict[str, Any] | None:
    if plan is None:
        return None
    return {
        "id": plan["id"],
        # the plan keeps each entry as a row; the page reads them by name
        "schedule": [dict(zip(ScheduledTask._fields, row, strict=True)) for row in plan["schedule"]["entries"]],
        "critical_path": plan["schedule"]["critical_path"],
        "budget": {line["master"]: line for line in plan["budget"]["lines"]},
        "tasks": [{"id": t["id"], "master": t["master"], "depends_on": t["depends_on"]} for t in plan["tasks"]],
        "routing": plan["routing"],
        "scenarios": plan.get("failure_scenarios", []),
        "makespan_s": plan["schedule"]["makespan_s"],
    }


async def nodes(redis: aredis.Redis, pool: str) -> list[dict[str, Any]]:
    """The pool's registered node agents and whether their heartbeat is alive."""
    keys = PoolKeys(pool)
    raw = await redis.hgetall(keys.nodes)
    out = []
    for name, v in sorted(raw.items()):
        info = NodeInfo.model_validate_json(v).model_dump()
        info["alive"] = bool(await redis.exists(keys.heartbeat(name)))
        out.append(info)
    return out


async def events(redis: aredis.Redis, run_id: str, after: str = "-", count: int = EVENTS_SHOWN) -> list[dict[str, Any]]:
    """The run's event stream after entry ``after`` (``-``: from the start): each envelope with its stream entry id
    (``entry``) and channel."""
    ms, _, seq = after.partition("-")
    start = "-" if after == "-" else f"{ms}-{int(seq or 0) + 1}"  # the entry after (no exclusive range before 6.2)
    out = []
    for entry_id, fields in await redis.xrange(RunKeys(run_id).events, start, "+", count=count):
        try:
            envelope = json.loads(fields.get("data", "{}"))
        except ValueError:
            continue  # not JSON: not ours to show
        out.append({**envelope, "entry": entry_id, "channel": fields.get("channel", "")})
    return out


async def plan_json(redis: aredis.Redis, run_id: str) -> dict[str, Any]:
    """The whole plan of an indexed run."""
    text = await redis.hget(run_index(run_id), "plan")
    if text is None:
        raise RunNotFound(f"no plan of run {run_id!r} in this Redis")
    return dict(json.loads(text))


async def recent_states(redis: aredis.Redis, within_s: float) -> list[dict[str, Any]]:
    """The state documents of runs going on, or refreshed within ``within_s`` (what ``/metrics`` exports)."""
    import time

    now = time.time()
    return [
        s
        for s in await _states(redis, 200)
        if s["status"] == "running" or now - float(s.get("updated_at") or 0) < within_s
    ]


MAX_PATCH_BYTES = 200_000


def patch_text(root: Path, path: str) -> str | None:
    """The text of the patch file ``path`` if it is a regular file under ``root`` (at most ``MAX_PATCH_BYTES``);
    None otherwise. Nothing outside ``root`` is read, whatever a task's output says."""
    from cortex.files import regular_file

    candidate = Path(path).resolve()
    if not candidate.is_relative_to(root) or not regular_file(candidate):
        return None
    with candidate.open("rb") as fh:
        data = fh.read(MAX_PATCH_BYTES + 1)
    text = data[:MAX_PATCH_BYTES].decode("utf-8", errors="replace")
    return text + ("\n... (cut at 200 kB)" if len(data) > MAX_PATCH_BYTES else "")
