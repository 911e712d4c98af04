"""What the fault injectors act on: a run whose coordinator is a separate ``cortex`` process (so it can be paused
with SIGSTOP and taken over by another), its private Redis server, its node agents and, optionally, a catalog
API. Everything the harness knows about the run it reads from Redis and the state directory, as an operator would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import redis.asyncio as aredis

from cortex.catalog.config import CatalogConfig
from cortex.catalog.server import BackgroundServer
from cortex.coord.keys import RunKeys
from cortex.coord.server import EmbeddedRedis
from cortex.files import read_json
from cortex.models import Plan
from cortex.runtime.statefiles import CURRENT


class CatalogService:
    """A catalog API that can be stopped and started again on the same port (the ``stop-catalog`` fault)."""

    def __init__(self, config: CatalogConfig, redis_url: str, token: str) -> None:
        self.config = config
        self.redis_url = redis_url
        self.token = token
        self.port = 0
        self.url = ""
        self._server: BackgroundServer | None = None

    def start(self) -> CatalogService:
        """Serve (on the port of the first start, once there was one)."""
        self._server = BackgroundServer(self.config, self.redis_url, port=self.port).start()
        self.url = self._server.url
        self.port = int(self.url.rsplit(":", 1)[1])
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.stop()
            self._server = None


class Target:
    """One chaos run: its coordinators (the first, and any that took over), Redis, state directory, catalog."""

    def __init__(
        self, plan: Plan, server: EmbeddedRedis, state_dir: Path, run_id: str, catalog: CatalogService | None
    ) -> None:
        self.plan = plan
        self.server = server
        self.state_dir = state_dir
        self.run_id = run_id
        self.keys = RunKeys(run_id)
        self.catalog = catalog
        self.coordinators: list[subprocess.Popen[bytes]] = []
        self.started = time.monotonic()
        self.env = {**os.environ, "CORTEX_REDIS_URL": server.url, "CORTEX_STATE_DIR": str(state_dir)}
        if catalog is not None:
            self.env.update(CORTEX_CATALOG_URL=catalog.url, CORTEX_CATALOG_TOKEN=catalog.token)

    def launch(self, *args: str) -> subprocess.Popen[bytes]:
        """Start ``cortex ARGS`` as a coordinator of this run, its output in the state directory."""
        log = (self.state_dir / f"coordinator-{len(self.coordinators) + 1}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "cortex", *args], env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
        log.close()  # the child has its own copy
        self.coordinators.append(proc)
        return proc

    def leader(self) -> subprocess.Popen[bytes]:
        """The newest coordinator: the one that leads, or will once it has the lease."""
        return self.coordinators[-1]

    def finished(self) -> bool:
        """The leading coordinator has exited."""
        return bool(self.coordinators) and self.leader().poll() is not None

    def elapsed(self) -> float:
        """Seconds since execution began."""
        return round(time.monotonic() - self.started, 3)

    def executing(self) -> bool:
        """The run has reached phase 3 (from its live state file)."""
        current = read_json(self.state_dir / CURRENT)
        return bool(current and current.get("run_id") == self.run_id and current.get("phase", 0) >= 3)

    async def progress(self, redis: aredis.Redis) -> float:
        """Fraction of the plan's tasks whose stored record has ended."""
        records = await redis.hvals(self.keys.tasks)
        ended = sum(1 for r in records if json.loads(r)["state"] in ("succeeded", "failed", "skipped"))
        return ended / max(1, len(self.plan.tasks))

    async def agent_pids(self, redis: aredis.Redis) -> dict[str, int]:
        """Live node agents by node (from what they report in Redis)."""
        nodes = {k: json.loads(v) for k, v in (await redis.hgetall(self.keys.nodes)).items()}
        return {n: int(d["agent_pid"]) for n, d in nodes.items() if _alive(int(d.get("agent_pid", 0)))}

    def worker_nodes(self) -> set[str]:
        """Nodes that host workers."""
        return {w.node for w in self.plan.workers}

    def report(self) -> dict[str, Any] | None:
        """The run's report data, once a coordinator has written it."""
        data = read_json(self.state_dir / "runs" / self.run_id / "report.json")
        return data if isinstance(data, dict) else None


def _alive(pid: int) -> bool:
    try:
        return pid > 0 and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
