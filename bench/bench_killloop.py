"""Nothing lost under a kill loop on real work: the demo goal over copies of examples/fleet (12 repositories by
default) on a Redis server with an append-only file and with a catalog service, both started by this script,
while it

- SIGKILLs a random master or worker every 2-5 s (until aggregation begins),
- stops one worker (SIGSTOP) for 30 s,
- takes Redis down for 2 s, and later for 60 s,
- SIGKILLs the coordinator once and starts ``cortex takeover`` 30 s later.

Each run is then checked: every planned and handed-off task in the report exactly once, none lost, no effect
applied twice (one fix branch per fix, one commit on it, the one the report names; one lineage announcement per
task), no worktree, work directory, temporary directory or process left behind, and an honest outcome (the exit
code matches the status, the status matches the tasks). The figures go to RELIABILITY.md.

    python bench/bench_killloop.py                # three runs
    python bench/bench_killloop.py --runs 1 --copies 3

Needs the network once (PyPI, npm) to build the fleet's test environments; they are cached between runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402
from cortex.catalog.config import CatalogConfig, new_token  # noqa: E402
from cortex.catalog.server import BackgroundServer  # noqa: E402
from cortex.coord.keys import RunKeys  # noqa: E402
from cortex.coord.server import EmbeddedRedis  # noqa: E402
from cortex.toolset.fleet import working_copy  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GOAL = "Run the full catalog toolset across the fleet"


@dataclass
class Faults:
    """What was injected, and when (seconds since execution began)."""

    kills: list[tuple[float, str]] = field(default_factory=list)
    injected: dict[str, float] = field(default_factory=dict)
    """Scheduled fault -> when it was injected; a fault the run ended before is missing."""


def cortex(*args: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "cortex", *args], env=env, stdout=out, stderr=out, cwd=ROOT)


def make_fleet(dest: Path, copies: int) -> Path:
    staging = dest.with_name(dest.name + "-src")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for i in range(1, copies + 1):
        for repo in sorted(p for p in (ROOT / "examples" / "fleet").iterdir() if p.is_dir()):
            shutil.copytree(repo, staging / f"{repo.name}-{i}", ignore=shutil.ignore_patterns("__pycache__"))
    working_copy(staging, dest)
    shutil.rmtree(staging)
    return dest


def state_doc(state: Path) -> dict[str, Any]:
    try:
        return json.loads((state / "current-execution.json").read_text())  # type: ignore[no-any-return]
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _agents(run_id: str) -> list[psutil.Process]:
    """The node agents the run's coordinator started (``cortex node ... --for-run RUN``)."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if "node" in cmd and "--for-run" in cmd and run_id in cmd:
            found.append(p)
    return found


def run_processes(run_id: str) -> list[psutil.Process]:
    """Node agents of the run and what they forked (masters, workers); processes that exit meanwhile are left out."""
    found = []
    for agent in _agents(run_id):
        with contextlib.suppress(psutil.Error):
            found += [agent, *agent.children(recursive=True)]
    return [p for p in found if _alive(p)]


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def masters_and_workers(run_id: str) -> list[psutil.Process]:
    """What the run's node agents forked: its masters and workers (not the tools a worker runs)."""
    out = []
    for agent in _agents(run_id):
        with contextlib.suppress(psutil.Error):
            out += [c for c in agent.children() if _alive(c)]
    return out


class Run:
    """One run of the demo goal under the kill loop."""

    def __init__(
        self, index: int, work: Path, fleet: Path, plan: Path, redis: EmbeddedRedis, seed: int, catalog: dict[str, str]
    ) -> None:
        self.run_id = f"killloop-{index}-{int(time.time())}"
        self.work, self.fleet, self.plan, self.redis = work, fleet, plan, redis
        self.rng = random.Random(seed)
        self.state = work / "state"
        self.log = work / f"{self.run_id}.log"
        self.env = {
            **os.environ,
            "CORTEX_REDIS_URL": redis.url,
            "CORTEX_STATE_DIR": str(self.state),
            "CORTEX_STALL_S": "60",
            "COLUMNS": "200",
            **catalog,
        }
        self.faults = Faults()
        self.t0 = 0.0
        self.done = threading.Event()
        self.stopped: list[psutil.Process] = []

    def at(self) -> float:
        return round(time.monotonic() - self.t0, 1)

    def redis_down(self, seconds: float, name: str) -> None:
        assert self.redis.process is not None
        self.faults.injected[name] = self.at()
        self.redis.process.kill()
        self.redis.process.wait(timeout=10)
        time.sleep(seconds)  # the outage itself
        self.redis.start(timeout_s=60)

    def kill_loop(self) -> None:
        while not self.done.wait(self.rng.uniform(2, 5)):
            if state_doc(self.state).get("phase", 0) >= 4:
                return  # aggregation: the work is done
            victims = [p for p in masters_and_workers(self.run_id) if p not in self.stopped]
            if victims:
                victim = self.rng.choice(victims)
                try:
                    name = victim.name()
                    victim.send_signal(signal.SIGKILL)
                    self.faults.kills.append((self.at(), name))
                except psutil.Error:
                    pass

    def pause_worker(self, seconds: float) -> None:
        client = redis.Redis.from_url(self.redis.url, decode_responses=True)
        reported = [json.loads(v) for v in client.hgetall(RunKeys(self.run_id).processes).values()]
        client.close()
        pids = {int(p["pid"]) for p in reported if p["kind"] == "worker" and p["pid"]}
        workers = [p for p in masters_and_workers(self.run_id) if p.pid in pids]
        if not workers:
            return
        victim = self.rng.choice(workers)
        self.stopped.append(victim)
        self.faults.injected["worker stopped 30 s"] = self.at()
        victim.send_signal(signal.SIGSTOP)
        self.done.wait(seconds)
        with contextlib.suppress(psutil.Error):
            victim.send_signal(signal.SIGCONT)

    def execute(self) -> dict[str, Any]:
        started = time.monotonic()
        first = cortex("run", str(self.plan), "--run-id", self.run_id, env=self.env, log=self.log)
        while state_doc(self.state).get("phase", 0) < 3 or state_doc(self.state).get("run_id") != self.run_id:
            if first.poll() is not None:
                raise SystemExit(f"the run ended before execution began; see {self.log}")
            time.sleep(0.2)
        self.t0 = time.monotonic()
        threads = [
            threading.Thread(target=self.kill_loop, daemon=True),
            threading.Thread(target=self._delayed, args=(3, self.pause_worker, 30.0), daemon=True),
        ]
        for t in threads:
            t.start()
        time.sleep(6)
        if first.poll() is None:
            self.redis_down(2, "Redis down 2 s")
        time.sleep(2)
        final = first
        if first.poll() is None:
            self.faults.injected["coordinator killed"] = self.at()
            first.send_signal(signal.SIGKILL)
            first.wait()
            time.sleep(30)  # the run has no coordinator; its node agents stop its processes after about 22 s
            self.faults.injected["takeover started"] = self.at()
            final = cortex("takeover", self.run_id, "--wait", "60", env=self.env, log=self.log)
            while state_doc(self.state).get("phase", 0) < 3 and final.poll() is None:
                time.sleep(0.2)
            time.sleep(5)
            if final.poll() is None and state_doc(self.state).get("phase", 0) < 4:
                self.redis_down(60, "Redis down 60 s")
        code = final.wait(timeout=1800)
        self.done.set()
        for t in threads:
            t.join(timeout=60)
        for p in self.stopped:  # a stopped worker the run ended without must not stay stopped
            with contextlib.suppress(psutil.Error):
                p.send_signal(signal.SIGCONT)
        return {"exit_code": code, "first_exit": first.returncode, "seconds": round(time.monotonic() - started, 1)}

    def _delayed(self, delay: float, fn: Any, *args: Any) -> None:
        if not self.done.wait(delay):
            fn(*args)


def check(run: Run, outcome: dict[str, Any], temp_before: set[str]) -> dict[str, Any]:
    """Every figure of one run, and what is wrong with it (``problems``)."""
    problems: list[str] = []
    report_file = run.state / "runs" / run.run_id / "report.json"
    report = json.loads(report_file.read_text())
    plan = json.loads(run.plan.read_text())
    ids = Counter(t["id"] for t in report["tasks"])
    twice = sorted(i for i, n in ids.items() if n > 1)
    planned = {t["id"] for t in plan["tasks"]}
    handed = {h["task"] for h in report["handoffs"] if h.get("decision") == "admitted"}
    missing = sorted((planned | handed) - set(ids))
    lost = [t["id"] for t in report["tasks"] if t["state"] not in ("succeeded", "failed", "skipped")] + missing
    if twice:
        problems.append(f"tasks reported twice: {twice}")
    if lost:
        problems.append(f"lost: {lost}")
    fixes = [t for t in report["tasks"] if t["state"] == "succeeded" and t["output"].get("commit")]
    duplicated, fix_ok = check_fixes(run.fleet, fixes, problems)
    events = run.state / "archives" / f"CORTEX-EXEC-{run.run_id}" / "events.jsonl"
    announced = Counter()
    for line in events.read_text().splitlines():
        e = json.loads(line)
        if e.get("type") == "lineage" and e.get("from") != "coordinator":
            announced[e.get("task_id")] += 1
    recorded = [t["id"] for t in report["tasks"] if t["state"] == "succeeded" and t["kind"] == "inventory.discover"]
    unannounced = [t for t in recorded if not announced[t]]
    if unannounced:
        problems.append(f"discoveries whose catalog lineage was never announced: {unannounced}")
    twice_announced = {t: n for t, n in announced.items() if n > 1}
    if twice_announced:
        duplicated += sum(n - 1 for n in twice_announced.values())
        problems.append(f"lineage announced more than once: {twice_announced}")
    orphans = []
    if (run.state / "runs" / run.run_id / "work").exists():
        orphans.append("work directory")
    temp_after = {p.name for p in Path(tempfile.gettempdir()).iterdir() if p.name.startswith("cortex-")}
    orphans += sorted(temp_after - temp_before)
    deadline = time.monotonic() + 30
    while run_processes(run.run_id) and time.monotonic() < deadline:
        time.sleep(0.5)
    orphans += [f"process {p.pid}" for p in run_processes(run.run_id)]
    if orphans:
        problems.append(f"orphaned: {orphans}")
    optional = {t["id"] for t in plan["tasks"] if t.get("optional")}
    required_ok = all(
        (t["state"] == "succeeded") if t["origin"] == "plan" else t["state"] != "failed"
        for t in report["tasks"]
        if t["id"] not in optional
    )
    expected = "succeeded" if required_ok and not report["lost_fixes"] else "failed"
    honest = report["status"] == expected and outcome["exit_code"] == (0 if expected == "succeeded" else 1)
    if not honest:
        problems.append(f"outcome: status {report['status']}, exit {outcome['exit_code']}, expected {expected}")
    states = Counter(t["state"] for t in report["tasks"])
    return {
        **outcome,
        "status": report["status"],
        "tasks": len(report["tasks"]),
        "planned": len(planned),
        "handed_off": len(handed),
        "states": dict(states),
        "executions": report["executions"],
        "attempts": sum(t["attempts"] for t in report["tasks"]),
        "reassignments": report["reassignments"],
        "retries": report["retries"],
        "outages": [o["lasted_s"] for o in report["outages"]],
        "stalls": len(report["stalls"]),
        "kills": len(run.faults.kills),
        "faults": run.faults.injected,
        "lost": len(lost),
        "duplicated": duplicated,
        "orphaned": len(orphans),
        "fix_branches_ok": f"{fix_ok}/{len(fixes)}",
        "failed": {t["id"]: (t["error"] or "")[:200] for t in report["tasks"] if t["state"] == "failed"},
        "honest": honest,
        "problems": problems,
    }


def check_fixes(fleet: Path, fixes: list[dict[str, Any]], problems: list[str]) -> tuple[int, int]:
    """One fix branch per fix, one commit on it, the one the report names, no worktree left: the duplicated
    branches and the fixes found right."""
    duplicated = fix_ok = 0
    for repo in sorted(p for p in fleet.iterdir() if p.is_dir()):
        branches = git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/cortex/").split()
        mine = [t for t in fixes if t["target"] == repo.name]
        if len(branches) != len(mine):
            duplicated += abs(len(branches) - len(mine))
            problems.append(f"{repo.name}: branches {branches} for fixes {[t['output']['branch'] for t in mine]}")
        for t in mine:
            branch, commit = t["output"]["branch"], t["output"]["commit"]
            ahead = git(repo, "rev-list", "--count", f"main..{branch}")
            tip = git(repo, "rev-parse", branch)
            if ahead == "1" and tip == commit:
                fix_ok += 1
            else:
                problems.append(f"{t['id']}: {branch} has {ahead} commit(s), tip {tip[:12]} vs {commit[:12]}")
        trees = [ln for ln in git(repo, "worktree", "list", "--porcelain").splitlines() if ln.startswith("worktree ")]
        if len(trees) != 1:
            problems.append(f"{repo.name}: orphaned worktrees {trees[1:]}")
    return duplicated, fix_ok


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=60, check=False)
    return out.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--copies", type=int, default=2, help="copies of the 6-repository fleet (2: 12 repos)")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    parser.add_argument("--keep", action="store_true", help="keep the runs' directories (fleets, state, logs)")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    base = Path(tempfile.mkdtemp(prefix="killloop-"))
    results = []
    try:
        for i in range(1, args.runs + 1):
            work = base / f"run{i}"
            fleet = make_fleet(work / "fleet", args.copies)
            env = {**os.environ, "CORTEX_STATE_DIR": str(base / "plans")}
            plan_dir = work / "plan"
            subprocess.run(
                [sys.executable, "-m", "cortex", "plan", GOAL, "--targets", str(fleet), "--out", str(plan_dir)],
                env=env, check=True, capture_output=True, cwd=ROOT,
            )  # fmt: skip
            (work / "state").mkdir(parents=True)
            if (base / "envs").exists():  # the targets' environments, built once
                (work / "state" / "envs").symlink_to(base / "envs")
            else:
                (base / "envs").mkdir()
                (work / "state" / "envs").symlink_to(base / "envs")
            temp_before = {p.name for p in Path(tempfile.gettempdir()).iterdir() if p.name.startswith("cortex-")}
            token, spec = new_token("bench", ["read", "write"])
            with (
                EmbeddedRedis(work / "catalog-redis") as catalog_redis,
                BackgroundServer(CatalogConfig(tokens=[spec]), catalog_redis.url) as catalog,
                EmbeddedRedis(work / "redis") as redis,
            ):
                env = {"CORTEX_CATALOG_URL": catalog.url, "CORTEX_CATALOG_TOKEN": token}
                run = Run(i, work, fleet, plan_dir / "plan.json", redis, args.seed + i, env)
                outcome = run.execute()
            figures = check(run, outcome, temp_before)
            results.append(figures)
            print(json.dumps({"run": i, **figures}, indent=2), flush=True)
    finally:
        if args.json:
            args.json.write_text(json.dumps({"machine": machine(), "runs": results}, indent=2) + "\n")
        if args.keep:
            print(f"kept: {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    clean = sum(1 for r in results if not r["problems"])
    print(
        f"\n{clean} of {len(results)} runs clean: lost {sum(r['lost'] for r in results)}, "
        f"duplicated {sum(r['duplicated'] for r in results)}, orphaned {sum(r['orphaned'] for r in results)}"
    )
    sys.exit(0 if clean == len(results) else 1)


if __name__ == "__main__":
    main()
