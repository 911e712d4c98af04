"""Discovery throughput on a generated fleet: files of interest per second on the first pass, and the speed of
a second pass over the unchanged fleet (which must write nothing) relative to the first.

    python bench/bench_discovery.py [--repos 250]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from pathlib import Path

import redis.asyncio as aredis

from _common import machine
from cortex.catalog.discovery import discover, interesting
from cortex.catalog.store import CatalogStore
from cortex.coord.server import EmbeddedRedis

PACKAGES = ["requests", "flask", "django", "numpy", "pydantic", "httpx", "jinja2", "pyyaml", "boto3", "click"]
NPM = ["express", "lodash", "react", "axios", "moment", "chalk", "debug", "uuid"]


def generate(root: Path, repos: int, seed: int = 3) -> int:
    """A fleet of Python and Node repositories with manifests, Dockerfiles, workflows and Kubernetes YAML."""
    rng = random.Random(seed)
    for i in range(repos):
        repo = root / f"svc-{i:04d}"
        (repo / "src").mkdir(parents=True)
        (repo / "tests").mkdir()
        (repo / ".github" / "workflows").mkdir(parents=True)
        (repo / "k8s").mkdir()
        if i % 3:
            deps = rng.sample(PACKAGES, 4)
            (repo / "requirements.txt").write_text(
                "".join(f"{d}=={rng.randint(1, 5)}.{rng.randint(0, 9)}\n" for d in deps)
            )
            (repo / "src" / "app.py").write_text("def handler(event):\n    return event\n" * 20)
        else:
            deps = rng.sample(NPM, 3)
            (repo / "package.json").write_text(
                json.dumps({"name": repo.name, "dependencies": {d: "^1.0.0" for d in deps}})
            )
            (repo / "src" / "index.js").write_text("module.exports = () => 1;\n" * 20)
        (repo / "Dockerfile").write_text(f"FROM python:3.{rng.randint(8, 12)}-slim\nCOPY . /app\n")
        (repo / ".github" / "workflows" / "ci.yml").write_text("on: push\njobs:\n  t:\n    runs-on: x\n    steps: []\n")
        (repo / "k8s" / "deploy.yaml").write_text(
            f"apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {repo.name}, namespace: ns{i % 10}}}\n"
            f"spec:\n  template:\n    spec:\n      containers:\n        - {{name: app, image: reg/{repo.name}:1}}\n"
        )
    return sum(len(interesting(p)) for p in root.iterdir())


async def passes(url: str, fleet: Path) -> tuple[float, float, int, int]:
    redis = aredis.Redis.from_url(url, decode_responses=True)
    store = CatalogStore(redis)
    t = time.perf_counter()
    first = await discover(store, [fleet])
    t1 = time.perf_counter() - t
    t = time.perf_counter()
    second = await discover(store, [fleet])
    t2 = time.perf_counter() - t
    await redis.aclose()
    assert second.writes == 0
    return t1, t2, first.writes, first.files_seen


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repos", type=int, default=250)
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(appendonly=False) as server:
        fleet = Path(tmp) / "fleet"
        files = generate(fleet, args.repos)
        t1, t2, writes, seen = asyncio.run(passes(server.url, fleet))
    print(f"{args.repos} repositories, {files} files of interest")
    print(f"first discovery:  {t1:.2f} s, {seen / t1:,.0f} files/s, {writes:,} store writes")
    print(f"second (unchanged): {t2:.2f} s, {seen / t2:,.0f} files/s, 0 writes; {t1 / t2:.1f}x faster than the first")


if __name__ == "__main__":
    main()
