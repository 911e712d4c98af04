"""Incremental runs, the runtime's part: the fingerprint of what produces results, and the recorded results.

``fingerprint`` digests the Cortex version, every installed Python distribution with its version, the Python
and Node.js versions, and the advisory data the dependency audits read (the OSV directory's or file's names, sizes
and modification times; with an online OSV API, the day as well, since the service changes under it). Any change
there changes every task's key (``planner.reuse.cache_key``).

Results are recorded at the end of a run for each task that succeeded with a key and ran (a reused result is not
recorded again): in ``<state dir>/cache/<key>.json`` on the coordinator's host and in Redis (``keys.CACHE``, the
latest ``CACHE_KEEP``), where runs coordinated from any host find them (cluster mode).
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import redis
import redis.asyncio as aredis
from pydantic import ValidationError
from redis.exceptions import RedisError

from cortex import __version__
from cortex.coord.connection import redact_url
from cortex.coord.keys import CACHE, CACHE_KEEP, CACHE_ORDER
from cortex.files import write_atomic
from cortex.models.history import CacheEntry
from cortex.runtime.history import keep_latest
from cortex.runtime.records import TaskRecord


def _node_version() -> str:
    node = shutil.which("node")
    if node is None:
        return "none"
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() or "unknown"


def _advisories(osv_path: Path | None, osv_api: str | None) -> str:
    parts: list[str] = ["bundled" if osv_path is None else str(osv_path)]
    if osv_path is not None:
        try:
            entries = sorted(osv_path.iterdir()) if osv_path.is_dir() else [osv_path]
            parts += [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in entries]
        except OSError:
            parts.append("unreadable")
    if osv_api:
        parts += [osv_api, datetime.datetime.now(datetime.UTC).date().isoformat()]
    return "|".join(parts)


def fingerprint(osv_path: Path | None = None, osv_api: str | None = None) -> str:
    """The digest of what, besides a task and its target, decides its result (see the module's docstring)."""
    dists = sorted(f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions())
    blob = "\n".join([__version__, sys.version, _node_version(), _advisories(osv_path, osv_api), *dists])
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _path(state_dir: Path, key: str) -> Path:
    return state_dir / "cache" / f"{key}.json"


def _read_local(state_dir: Path, key: str) -> CacheEntry | None:
    try:
        entry = CacheEntry.model_validate_json(_path(state_dir, key).read_bytes())
    except (OSError, ValidationError, ValueError):  # absent, or damaged: run the task again
        return None
    return entry if entry.key == key else None


class PlanningCache:
    """The recorded results as the planner asks for them (``planner.reuse.ResultCache``): Redis's when a URL is
    given (cluster mode), else the state directory's."""

    def __init__(self, fingerprint: str, state_dir: Path, redis_url: str | None = None) -> None:
        self.fingerprint = fingerprint
        self.state_dir = state_dir
        self.redis_url = redis_url
        self.problem: str | None = None
        """Why the recorded results could not be read (the plan then expects no reuse; the run still looks)."""

    def runs_of(self, keys: list[str]) -> Mapping[str, str]:
        """key -> the run that recorded it, for the keys recorded."""
        found: dict[str, str] = {}
        if self.redis_url:
            client = redis.Redis.from_url(self.redis_url, decode_responses=True, socket_connect_timeout=5)
            try:
                for key, raw in zip(keys, client.hmget(CACHE, keys), strict=True):
                    if raw is not None:
                        found[key] = CacheEntry.model_validate_json(raw).run_id
            except (RedisError, OSError, ValidationError) as exc:
                self.problem = (
                    f"recorded results not read from {redact_url(self.redis_url)} ({type(exc).__name__}): "
                    "the plan expects no reuse"
                )
                return {}
            finally:
                client.close()
            return found
        for key in keys:
            entry = _read_local(self.state_dir, key)
            if entry is not None:
                found[key] = entry.run_id
        return found


async def lookup(client: aredis.Redis, state_dir: Path, keys: list[str]) -> dict[str, CacheEntry]:
    """The recorded results of ``keys``: Redis's first, then the state directory's."""
    found: dict[str, CacheEntry] = {}
    for key, raw in zip(keys, await client.hmget(CACHE, keys), strict=True):
        if raw is not None:
            try:
                found[key] = CacheEntry.model_validate_json(raw)
            except ValidationError:
                continue
    for key in keys:
        if key not in found and (entry := _read_local(state_dir, key)) is not None:
            found[key] = entry
    return found


def entries_of(run_id: str, records: Iterable[TaskRecord]) -> list[CacheEntry]:
    """The results of a finished run worth recording: tasks with a key that succeeded and ran (not reused)."""
    return [
        CacheEntry(
            key=rec.task.cache_key,
            run_id=run_id,
            task_id=rec.task.id,
            kind=rec.task.kind,
            finished_at=rec.finished_at or 0.0,
            duration_s=rec.duration_s,
            output=rec.output,
            handoffs=rec.handoffs,
        )
        for rec in records
        if rec.task.cache_key and rec.state.value == "succeeded" and not rec.reused_from and rec.duration_s is not None
    ]


async def record(client: aredis.Redis, state_dir: Path, entries: list[CacheEntry]) -> None:
    """Keep ``entries`` on this host and in Redis (the latest ``CACHE_KEEP`` stay there)."""
    if not entries:
        return
    for e in entries:
        write_atomic(_path(state_dir, e.key), e.model_dump_json() + "\n")
    pipe = client.pipeline(transaction=False)
    pipe.hset(CACHE, mapping={e.key: e.model_dump_json() for e in entries})
    pipe.zadd(CACHE_ORDER, {e.key: e.finished_at for e in entries})
    await pipe.execute()
    await keep_latest(client, CACHE_ORDER, CACHE, CACHE_KEEP)
