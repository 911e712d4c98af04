"""Security tools: dependency audit against an OSV-format vulnerability database (a directory or the zip
osv.dev publishes per ecosystem). Version ranges are evaluated per ecosystem with a library: PEP 440
(``packaging``) for PyPI, semantic versioning (``semver``) for npm; never by string comparison."""

from __future__ import annotations

import asyncio
import json
import textwrap
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import semver
import yaml
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from cortex.errors import TaskFailed
from cortex.repo import Package, node_packages, python_packages
from cortex.toolset.context import Output, TaskContext, count_by, task_kind

BUNDLED = Path(__file__).parent / "osv"
"""The small real subset shipped for the demo fleet (see its README)."""
SEVERITY_ORDER = ["critical", "high", "medium", "low", "unknown"]


def _key(ecosystem: str, name: str) -> tuple[str, str]:
    eco = ecosystem.lower()
    return eco, canonicalize_name(name) if eco == "pypi" else name.lower()


def _records(source: Path) -> Iterator[dict[str, Any]]:
    if source.is_file() and source.suffix == ".zip":
        with zipfile.ZipFile(source) as zf:
            for name in zf.namelist():
                if name.endswith(".json"):
                    yield json.loads(zf.read(name))
        return
    for path in sorted(source.rglob("*")):
        if path.suffix == ".json":
            yield json.loads(path.read_text(encoding="utf-8"))
        elif path.suffix in (".yaml", ".yml"):
            yield yaml.safe_load(path.read_text(encoding="utf-8"))


@dataclass
class OsvIndex:
    """Advisories by (ecosystem, package)."""

    source: str
    by_package: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def advisories(self) -> int:
        """How many advisory entries were loaded (one per affected package)."""
        return sum(len(v) for v in self.by_package.values())

    def add(self, record: dict[str, Any]) -> None:
        """Index one OSV record under each package it affects."""
        for affected in record.get("affected", []):
            pkg = affected.get("package", {})
            if pkg.get("ecosystem") and pkg.get("name"):
                self.by_package.setdefault(_key(pkg["ecosystem"], pkg["name"]), []).append(
                    {**record, "affected": [affected]}
                )

    def ids(self) -> set[str]:
        """Every advisory id and alias held."""
        return {i for recs in self.by_package.values() for r in recs for i in (r["id"], *r.get("aliases", []))}


@cache
def load_osv(source: Path) -> OsvIndex:
    """Index an OSV directory or zip (cached per process: workers audit many targets against one database)."""
    if not source.exists():
        raise TaskFailed(f"OSV database {source} does not exist (set CORTEX_OSV_PATH)", retryable=False)
    index = OsvIndex(str(source))
    for record in _records(source):
        index.add(record)
    return index


def _parse(ecosystem: str, version: str) -> Any:
    if ecosystem == "pypi":
        return Version(version)
    return semver.Version.parse(version.lstrip("v"))


def affected_by(record: dict[str, Any], ecosystem: str, version: str) -> str | None:
    """If ``version`` is affected by the record, the first fixed version after it ('' when none); else None."""
    aff = record["affected"][0]
    if version in aff.get("versions", []):
        fixes = [
            e["fixed"]
            for r in aff.get("ranges", [])
            if r.get("type") in ("ECOSYSTEM", "SEMVER")
            for e in r.get("events", [])
            if "fixed" in e
        ]
        return _first_fix(ecosystem, version, fixes)
    try:
        v = _parse(ecosystem, version)
    except (InvalidVersion, ValueError):
        return None
    for rng in aff.get("ranges", []):
        if rng.get("type") not in ("ECOSYSTEM", "SEMVER"):
            continue  # GIT ranges name commits, not releases
        inside, fix = False, None
        for event in rng.get("events", []):
            if "introduced" in event:
                start = event["introduced"]
                inside = start == "0" or _parse(ecosystem, start) <= v
            elif "fixed" in event and inside and v >= _parse(ecosystem, event["fixed"]):
                inside = False
            elif "fixed" in event and inside:
                fix = event["fixed"]
                break
            elif "last_affected" in event and inside and v > _parse(ecosystem, event["last_affected"]):
                inside = False
        if inside:
            return fix or ""
    return None


def _first_fix(ecosystem: str, version: str, fixes: list[str]) -> str:
    try:
        v = _parse(ecosystem, version)
        later = sorted((f for f in fixes if _parse(ecosystem, f) > v), key=lambda f: _parse(ecosystem, f))
    except (InvalidVersion, ValueError):
        return ""  # a version the ecosystem's scheme cannot order: affected, fix unknown
    return later[0] if later else ""


def severity(record: dict[str, Any]) -> str:
    """The advisory's own severity: GitHub's label, else a CVSS vector's base score, else 'unknown'."""
    label = str(record.get("database_specific", {}).get("severity", "")).lower()
    if label:
        return {"moderate": "medium"}.get(label, label)
    for item in record.get("severity", []):
        if str(item.get("type", "")).startswith("CVSS_V3"):
            from cvss import CVSS3

            score = CVSS3(item["score"]).scores()[0]
            return "critical" if score >= 9 else "high" if score >= 7 else "medium" if score >= 4 else "low"
    return "unknown"


def pinned_version(pkg: Package) -> str | None:
    """The exact version in use: a PyPI ``==`` pin or an npm lock-file version; None when only a range is known."""
    if pkg["ecosystem"] == "npm":
        return pkg.get("locked")
    spec = pkg["spec"]
    if spec.startswith("==") and "," not in spec and "*" not in spec:
        return spec[2:]
    return None


def audit(root: Path, index: OsvIndex) -> Output:
    """Findings for every pinned package of the repository, one per advisory group (aliases merged)."""
    findings: dict[tuple[str, str], dict[str, Any]] = {}
    unresolved: list[str] = []
    packages = python_packages(root) + node_packages(root)
    for pkg in packages:
        version = pinned_version(pkg)
        if version is None:
            unresolved.append(f"{pkg['name']}{pkg['spec']}")
            continue
        eco = pkg["ecosystem"].lower()
        for record in index.by_package.get(_key(eco, pkg["name"]), []):
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
        "database": index.source,
        "advisories_loaded": index.advisories,
        "packages": len(packages),
        "unresolved": sorted(unresolved),
        "findings": ordered,
        "by_severity": count_by(ordered, "severity"),
        "handoffs": fix_handoffs(ordered),
    }


def fix_handoffs(findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One handoff to development per vulnerable PyPI pin whose advisories all have a fixed version: bump to the
    lowest version that fixes every one of them."""
    by_pin: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for f in findings:
        if f["ecosystem"] == "PyPI":
            by_pin.setdefault((f["package"], f["version"], f["source"]), []).append(f)
    out = []
    for (package, version, source), group in sorted(by_pin.items()):
        if any(not f["fixed"] for f in group):
            continue  # an advisory without a fix: a bump cannot help, a person must decide
        target = max((f["fixed"] for f in group), key=Version)
        out.append(
            {
                "to": "development",
                "kind": "development.bump-pin",
                "worker_type": "implementation",
                "key": canonicalize_name(package),
                "estimate_tokens": 0,
                "estimate_seconds": 5,
                "reason": f"{package} {version} has {len(group)} advisory(ies) fixed in {target}",
                "params": {
                    "package": package,
                    "from": version,
                    "to": target,
                    "file": source,
                    "advisories": [{"id": f["id"], "severity": f["severity"], "summary": f["summary"]} for f in group],
                },
            }
        )
    return out


@task_kind("security.dependency-audit")
async def dependency_audit_task(ctx: TaskContext) -> Output:
    """Audit the target's pinned dependencies against the OSV database (``params.osv`` or the bundled subset)."""
    source = Path(ctx.task.params.get("osv") or ctx.services.osv_path or BUNDLED)
    root = ctx.require_target()
    index = await asyncio.to_thread(load_osv, source)
    api = ctx.task.params.get("osv_api") or ctx.services.osv_api
    online: dict[str, Any] = {"api": None}
    if api:
        index, online = await _with_online(str(api), root, index)
    result = await asyncio.to_thread(audit, root, index)
    return {**result, "online": online}


async def _with_online(api: str, root: Path, index: OsvIndex) -> tuple[OsvIndex, dict[str, Any]]:
    """``index`` plus the API's records for the repository's pins; on an API failure, ``index`` unchanged and the
    error in the returned note (the offline result still stands)."""
    from cortex.toolset.osv_online import fetch_records

    packages = python_packages(root) + node_packages(root)
    queries = [(p["ecosystem"], p["name"], v) for p in packages if (v := pinned_version(p))]
    try:
        records = await fetch_records(api, queries, index.ids())
    except httpx.HTTPError as exc:
        return index, {"api": api, "error": f"{type(exc).__name__}: {exc}; offline database only"}
    merged = OsvIndex(f"{index.source} + {api}", {k: list(v) for k, v in index.by_package.items()})
    for record in records:
        merged.add(record)
    return merged, {"api": api, "queried": len(queries), "records_fetched": len(records)}


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
    excluded = ",".join(str(root / d) for d in ("tests", "test", ".venv", "venv", "node_modules"))
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
