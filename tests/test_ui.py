"""``cortex ui`` in a real browser (Chromium driven by Playwright, no network beyond the view): a live run's page
updates without a reload, a failed task shows its reason, the Gantt has one measured bar per task that ran; the
plan, findings, runs and catalog pages render. Screenshots go to ``test-artifacts/ui/``. Without a Chromium (Debian's
``chromium`` package; CI installs it as root) or the playwright package, the browser tests are skipped saying so.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from cortex.chaos.plan import MASTERS, chaos_cluster
from cortex.coord.server import EmbeddedRedis
from cortex.models import Plan, Roster
from cortex.models.assets import Asset, LineageEdge
from cortex.models.plan import RoutingDecision
from cortex.models.task import Estimate, Task
from cortex.planner import assemble_plan
from cortex.runtime.coordinator import Coordinator
from cortex.ui.app import create_app

from .conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
ARTIFACTS = ROOT / "test-artifacts" / "ui"
CHROMIUM = os.environ.get("CORTEX_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
try:
    import playwright.sync_api  # noqa: F401

    NO_BROWSER = None if CHROMIUM else "no Chromium (install Debian's chromium package, or set CORTEX_CHROMIUM)"
except ImportError:
    NO_BROWSER = "the playwright package is not installed"


def ui_plan() -> Plan:
    """Twelve tasks of 1.5 s over two masters, one of which fails for good (a file outside its root)."""
    roster = Roster.model_validate(
        {
            "masters": [{"name": m, "role": m, "base_budget": 0, "worker_pool": 0} for m in MASTERS],
            "worker_types": [{"name": f"{m}-w", "master": m, "count": 2, "budget": 0} for m in MASTERS],
            "routing": {"fallback": "testing"},
        }
    )
    tasks = [
        Task(
            id=f"ui-{i:02d}",
            master=MASTERS[i % 2],
            kind="chaos.work",
            worker_type=f"{MASTERS[i % 2]}-w",
            depends_on=[f"ui-{i - 4:02d}"] if i >= 4 else [],
            params={"seconds": 1.5},
            estimate=Estimate(seconds=1.5, tokens=0),
        )
        for i in range(11)
    ]
    tasks.append(
        Task(
            id="ui-broken",
            master="testing",
            kind="chaos.contend",
            worker_type="testing-w",
            params={"file": "../../outside"},
            estimate=Estimate(seconds=0.1, tokens=0),
        )
    )
    routing = RoutingDecision(
        mode="parallel", selected=list(MASTERS), scores=[], single_expert_threshold=1, parallel_threshold=1
    )
    return assemble_plan("watch a run in the browser", [], roster, chaos_cluster(2, 2), routing, tasks)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str, threading.Thread, dict[str, object]]]:
    """Redis, a run going on in a thread, and the view on a free port; all stopped at the end."""
    with EmbeddedRedis(tmp_path / "redis") as redis:
        result: dict[str, object] = {}

        def run() -> None:
            coord = Coordinator(ui_plan(), redis.url, tmp_path / "state", run_id="ui-run")
            result["run"] = asyncio.run(coord.run())

        runner = threading.Thread(target=run, daemon=True)
        runner.start()
        port = _free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(redis.url), host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while not (server.started and _indexed(base)):
            assert time.monotonic() < deadline, "the view or the run did not come up"
            time.sleep(0.1)
        try:
            yield base, redis.url, runner, result
        finally:
            server.should_exit = True
            thread.join(timeout=20)
            runner.join(timeout=120)


def local_only(page: Any, base: str) -> list[str]:
    """Let the page fetch only from ``base``; returns the list the refused URLs are added to."""
    outside: list[str] = []

    def route(r: Any) -> None:
        if r.request.url.startswith(base):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    return outside


def _indexed(base: str) -> bool:
    try:
        return any(r["run_id"] == "ui-run" for r in httpx.get(f"{base}/api/runs", timeout=2).json())
    except httpx.HTTPError:
        return False


def test_the_api_serves_runs_and_refuses_unknown_ones(
    served: tuple[str, str, threading.Thread, dict[str, object]],
) -> None:
    base, _, runner, _ = served
    runner.join(timeout=120)
    view = httpx.get(f"{base}/api/runs/ui-run", timeout=10).json()
    assert view["state"]["status"] == "failed" and view["report"]["run_id"] == "ui-run"
    assert {t["id"] for t in view["tasks"]} == {t.id for t in ui_plan().tasks}
    # the plan keeps its schedule as rows; the page is given them by name
    planned = [(e["task_id"], e["worker_id"], e["start_s"], e["end_s"]) for e in view["plan"]["schedule"]]
    assert planned == [(e.task_id, e.worker_id, e.start_s, e.end_s) for e in ui_plan().schedule.entries]
    assert httpx.get(f"{base}/api/runs/nope", timeout=10).status_code == 404
    assert "ui-run" in httpx.get(f"{base}/?status=failed", timeout=10).text
    assert "ui-run" not in httpx.get(f"{base}/?status=succeeded", timeout=10).text
    exported = httpx.get(f"{base}/metrics", timeout=10).text  # outlives the run: scraped after it ended
    assert 'cortex_run_tasks{master="testing",run_id="ui-run",state="failed"} 1.0' in exported
    assert 'cortex_run_status_info{plan_id="' in exported and 'status="failed"} 1.0' in exported


@pytest.mark.skipif(NO_BROWSER is not None, reason=f"browser tests skipped: {NO_BROWSER}")
def test_a_live_run_in_the_browser(served: tuple[str, str, threading.Thread, dict[str, object]]) -> None:
    from playwright.sync_api import sync_playwright

    base, redis_url, runner, result = served
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    asyncio.run(_catalog_assets(redis_url))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        outside = local_only(page, base)
        page.goto(f"{base}/runs/ui-run")
        loaded = page.evaluate("window.cortexLoadedAt")
        page.wait_for_selector("#masters tbody tr")
        page.wait_for_selector("#processes tr[data-process='testing-w-worker-01']")  # each worker and its heartbeat
        first = page.evaluate("document.querySelectorAll('rect.bar.actual').length")
        page.screenshot(path=str(ARTIFACTS / "run-live.png"), full_page=True)
        page.wait_for_function(f"document.querySelectorAll('rect.bar.actual').length > {first}", timeout=60_000)
        page.wait_for_selector("body[data-finished='1']", timeout=120_000)
        assert page.evaluate("window.cortexLoadedAt") == loaded  # updated in place, never reloaded
        runner.join(timeout=60)
        report = result["run"].report  # type: ignore[attr-defined]
        ran = [t for t in report.tasks if t.worker and t.started_at and t.finished_at]
        assert page.evaluate("document.querySelectorAll('rect.bar.actual').length") == len(ran)
        titles = "[...document.querySelectorAll('rect.bar.planned title')].map((t) => t.textContent.split(' ')[0])"
        planned = page.evaluate(titles)  # the plan's bars beside the run's, one per scheduled task
        assert sorted(planned) == sorted(e.task_id for e in ui_plan().schedule.entries)
        failure = page.inner_text("#failures tr[data-task='ui-broken']")
        assert "params.file must stay under" in failure
        assert "5 reporting" in page.inner_text("#phases")
        page.screenshot(path=str(ARTIFACTS / "run-finished.png"), full_page=True)

        page.goto(f"{base}/runs/ui-run/plan")
        assert page.get_attribute("#graph svg", "data-nodes") == str(len(ui_plan().tasks))
        page.screenshot(path=str(ARTIFACTS / "plan.png"), full_page=True)
        page.goto(f"{base}/runs/ui-run/findings")
        assert "Findings of run" in page.inner_text("h1")
        page.goto(f"{base}/?q=browser")
        assert "ui-run" in page.inner_text("#runs")
        page.screenshot(path=str(ARTIFACTS / "runs.png"), full_page=True)

        page.goto(f"{base}/catalog?q=payments")
        page.click("text=repo:payments-api")
        page.wait_for_selector("#lineage svg")
        assert page.get_attribute("#lineage svg", "data-nodes") == "2"
        page.screenshot(path=str(ARTIFACTS / "asset.png"), full_page=True)
        browser.close()
    assert outside == []  # every asset came from the view itself


async def _catalog_assets(url: str) -> None:
    import redis.asyncio as aredis

    from cortex.catalog.store import CatalogStore

    redis = aredis.Redis.from_url(url, decode_responses=True)
    store = CatalogStore(redis)
    await store.upsert(Asset(id="repo:payments-api", type="repository", name="payments-api", tags=["python"]))
    await store.upsert(Asset(id="pkg:pypi:requests", type="package", name="requests", tags=["pypi"]))
    await store.link(
        LineageEdge(upstream="pkg:pypi:requests", downstream="repo:payments-api", relation="dependency_of")
    )
    await redis.aclose()


@pytest.mark.skipif(NO_BROWSER is not None, reason=f"browser tests skipped: {NO_BROWSER}")
def test_the_catalog_api_pages_render_with_no_network(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    from cortex.catalog.api import create_app as catalog_app
    from cortex.catalog.config import CatalogConfig

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with EmbeddedRedis(tmp_path / "redis") as redis:
        port = _free_port()
        app = catalog_app(CatalogConfig(read_open=True), redis.url)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 20
            while not server.started:
                assert time.monotonic() < deadline, "the catalog did not start"
                time.sleep(0.05)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
                page = browser.new_page(viewport={"width": 1300, "height": 900})
                outside = local_only(page, base)
                page.goto(f"{base}/docs")
                page.wait_for_selector(".swagger-ui .opblock", timeout=30_000)
                assert "/assets" in page.inner_text(".swagger-ui")
                page.screenshot(path=str(ARTIFACTS / "catalog-docs.png"))
                page.goto(f"{base}/redoc")
                page.wait_for_selector("text=Cortex catalog", timeout=30_000)
                page.screenshot(path=str(ARTIFACTS / "catalog-redoc.png"))
                page.goto(f"{base}/graphql")
                page.wait_for_selector(".graphiql-container", timeout=30_000)
                page.screenshot(path=str(ARTIFACTS / "catalog-graphiql.png"))
                browser.close()
            assert outside == []  # nothing fetched from anywhere else
        finally:
            server.should_exit = True
            thread.join(timeout=20)


def test_patches_are_read_only_under_the_state_directory(tmp_path: Path) -> None:
    from cortex.ui.data import patch_text

    root = tmp_path / "state"
    (root / "runs").mkdir(parents=True)
    (root / "runs" / "fix.patch").write_text("--- a/x\n+++ b/x\n")
    (tmp_path / "secret.patch").write_text("not for the view")
    (root / "runs" / "link.patch").symlink_to(tmp_path / "secret.patch")
    assert patch_text(root.resolve(), str(root / "runs" / "fix.patch")) == "--- a/x\n+++ b/x\n"
    assert patch_text(root.resolve(), str(tmp_path / "secret.patch")) is None
    assert patch_text(root.resolve(), str(root / "runs" / "link.patch")) is None
    assert patch_text(root.resolve(), str(root / "runs" / ".." / ".." / "secret.patch")) is None
