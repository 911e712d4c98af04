"""Security tools: dependency audit against an OSV-format vulnerability database (a directory or the zip
osv.dev publishes per ecosystem). Version ranges are evaluated per ecosystem with a library: PEP 440
(``packaging``) for PyPI, semantic versioning (``semver``) for npm; never by string comparison."""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path
from typing import Any

import httpx

from cortex.errors import TaskFailed
from cortex.files import links_outside
from cortex.repo import Package, declared_packages
from cortex.toolset.context import Output, TaskContext, count_by, task_kind
from cortex.toolset.fixplan import plan_fixes
from cortex.toolset.osvdb import BUNDLED, Layered, OsvIndex, OsvSource, affected_by, load_osv, severity

SEVERITY_ORDER = ["critical", "high", "medium", "low", "unknown"]


def pinned_version(pkg: Package) -> str | None:
    """The exact version in use: a PyPI ``==`` pin, or the version a lock file (npm, Cargo) or ``go.mod`` names;
    None when only a range is known."""
    if pkg["ecosystem"] != "PyPI":
        return pkg.get("locked")
    spec = pkg["spec"]
    if spec.startswith("==") and "," not in spec and "*" not in spec:
        return spec[2:]
    return None


def audit(root: Path, index: OsvSource) -> Output:
    """Findings for every pinned package of the repository, one per advisory group (aliases merged)."""
    findings: dict[tuple[str, str], dict[str, Any]] = {}
    unresolved: list[str] = []
    declared = declared_packages(root)
    packages = declared.packages
    for pkg in packages:
        version = pinned_version(pkg)
        if version is None:
            unresolved.append(f"{pkg['name']}{pkg['spec']}")
            continue
        eco = pkg["ecosystem"].lower()
        for record in index.records_for(eco, pkg["name"]):
            fix = affected_by(record, eco, version)
            if fix is None:
                continue
            ids = {record["id"], *record.get("aliases", [])}
            same = next((k for k, f in findings.items() if k[0] == pkg["name"] and ids & set(f["ids"])), None)
            if same:  # the same vulnerability under another database's id: one finding
                findings[same]["ids"] = sorted(set(findings[same]["ids"]) | ids)
                continue
            text = record.get("summary") or record.get("details", "")
            findings[(pkg["name"], record["id"])] = {
                "tool": "osv",
                "id": record["id"],
                "ids": sorted(ids),
                "package": pkg["name"],
                "ecosystem": pkg["ecosystem"],
                "version": version,
                "fixed": fix,
                "severity": severity(record),
                "summary": textwrap.shorten(" ".join(text.split()), width=240, placeholder="…"),
                "source": pkg["source"],
            }
    ordered = sorted(findings.values(), key=lambda f: (SEVERITY_ORDER.index(f["severity"]), f["package"], f["id"]))
    return {
        "repository": root.name,
        "database": index.describe().model_dump(),
        "packages": len(packages),
        "unresolved": sorted(unresolved),
        "unreadable": declared.problems,
        "findings": ordered,
        "by_severity": count_by(ordered, "severity"),
    }


def default_database(state_dir: Path, configured: Path | None) -> Path:
    """The database an audit reads: the configured one (``CORTEX_OSV_PATH``), else one ``cortex osv import`` made
    in the state directory, else the small subset bundled for the demo fleet."""
    if configured is not None:
        return configured
    imported = state_dir / "osv"
    return imported if (imported / "manifest.json").is_file() else BUNDLED


@task_kind("security.dependency-audit")
async def dependency_audit_task(ctx: TaskContext) -> Output:
    """Audit the target's pinned dependencies against the OSV database (``params.osv``, ``CORTEX_OSV_PATH``, an
    imported one in the state directory, or the bundled subset); the output names the database used."""
    configured = ctx.task.params.get("osv") or ctx.services.osv_path
    source = default_database(ctx.services.state_dir, Path(configured) if configured else None)
    root = ctx.require_target()
    index = await asyncio.to_thread(load_osv, source)
    api = ctx.task.params.get("osv_api") or ctx.services.osv_api
    online: dict[str, Any] = {"api": None}
    if api:
        index, online = await _with_online(str(api), root, index)
    result = await asyncio.to_thread(audit, root, index)
    handoffs, unfixable = plan_fixes(result["findings"], allow_major=bool(ctx.task.params.get("allow_major", True)))
    return {**result, "online": online, "handoffs": handoffs, "unfixable": unfixable}


async def _with_online(api: str, root: Path, index: OsvSource) -> tuple[OsvSource, dict[str, Any]]:
    """``index`` plus the API's records for the repository's pins; on an API failure, ``index`` unchanged and the
    error in the returned note (the offline result still stands)."""
    from cortex.toolset.osv_online import fetch_records

    packages = declared_packages(root).packages
    queries = [(p["ecosystem"], p["name"], v) for p in packages if (v := pinned_version(p))]
    held = {i for e, n, _ in queries for r in index.records_for(e, n) for i in (r["id"], *r.get("aliases", []))}
    try:
        records = await fetch_records(api, queries, held)
    except httpx.HTTPError as exc:
        return index, {"api": api, "error": f"{type(exc).__name__}: {exc}; offline database only"}
    fetched = OsvIndex(api)
    for record in records:
        fetched.add(record)
    return Layered(index, fetched, api), {"api": api, "queried": len(queries), "records_fetched": len(records)}


async def _tool_json(argv: list[str], cwd: Path, timeout_s: float, ok_codes: set[int]) -> Any:
    """Run a tool that prints JSON; its own error (or exit code) fails the task, nothing is invented."""
    from cortex.toolset.builtin import run_argv

    try:
        code, out, err = await run_argv(argv, str(cwd), timeout_s)
    except FileNotFoundError as exc:
        raise TaskFailed(f"{argv[0]} not found", retryable=False) from exc
    except TimeoutError as exc:
        raise TaskFailed(f"{argv[2]} timed out after {timeout_s:.0f} s") from exc
    if code not in ok_codes:
        raise TaskFailed(f"{argv[2]} exited with {code}: {(err or out).strip()[-500:]}")
    try:
        return json.loads(out)
    except json.JSONDecodeError as exc:
        raise TaskFailed(f"{argv[2]} printed no JSON: {out.strip()[:200]}") from exc


@task_kind("security.static-analysis")
async def bandit_task(ctx: TaskContext) -> Output:
    """bandit over the target's Python code (test folders excluded: asserts there are the point)."""
    import sys

    root = ctx.require_target()
    skipped = [*("tests", "test", ".venv", "venv", "node_modules"), *(rel for rel, _ in links_outside(root))]
    excluded = ",".join(str(root / d) for d in skipped)
    argv = [sys.executable, "-m", "bandit", "-r", str(root), "-f", "json", "-q", "-x", excluded]
    data = await _tool_json(argv, root, ctx.task.timeout_s, {0, 1})  # 1 = issues found
    findings = [
        {
            "tool": "bandit",
            "id": r["test_id"],
            "rule": r["test_name"],
            "severity": r["issue_severity"].lower(),
            "confidence": r["issue_confidence"].lower(),
            "file": str(Path(r["filename"]).relative_to(root)),
            "line": r["line_number"],
            "summary": r["issue_text"],
        }
        for r in data.get("results", [])
    ]
    findings.sort(key=lambda f: (SEVERITY_ORDER.index(f["severity"]), f["file"], f["line"]))
    return {"repository": root.name, "findings": findings, "errors": data.get("errors", [])}


@task_kind("security.secrets")
async def secrets_task(ctx: TaskContext) -> Output:
    """detect-secrets over every file of the target. Only the secret's type, file and line are reported: the
    tool keeps a hash, never the value, and so does every output of Cortex."""
    import sys

    root = ctx.require_target()
    argv = [sys.executable, "-m", "detect_secrets", "scan", "--all-files", "."]
    data = await _tool_json(argv, root, ctx.task.timeout_s, {0})
    findings = [
        {
            "tool": "detect-secrets",
            "id": item["type"],
            "severity": "high",
            "file": file,
            "line": item["line_number"],
            "summary": f"{item['type']} in {file}:{item['line_number']} (value redacted)",
        }
        for file, items in sorted(data.get("results", {}).items())
        for item in items
    ]
    return {"repository": root.name, "findings": findings}
