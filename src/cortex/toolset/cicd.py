"""CI/CD analysis of GitHub Actions workflows: caching, concurrency, timeouts, pinning, permissions, and jobs
chained with ``needs`` that use nothing of the job they wait for."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import yaml

from cortex.errors import TaskFailed
from cortex.repo import WorkflowLines, load_workflow, workflow_files, workflow_lines
from cortex.toolset.context import Output, TaskContext, count_by, task_kind

_SHA = re.compile(r"@[0-9a-f]{40}$")
_SETUP_WITH_CACHE = ("actions/setup-python", "actions/setup-node", "actions/setup-java", "actions/setup-go")


def _finding(rule: str, where: str, message: str, severity: str = "medium", line: int = 1) -> dict[str, Any]:
    """A workflow finding: the rule, where (file and job), the line, what is wrong."""
    return {
        "tool": "cortex",
        "rule": rule,
        "where": where,
        "file": where.split(":", 1)[0],
        "line": line,
        "message": message,
        "severity": severity,
    }


def _job_findings(
    file: str, name: str, job: dict[str, Any], top_concurrency: bool, lines: WorkflowLines
) -> list[dict[str, Any]]:
    where = f"{file}:jobs.{name}"
    at = lines["jobs"].get(name, 1)
    out = []
    raw_steps = job.get("steps", []) if isinstance(job.get("steps"), list) else []
    step_lines = lines["steps"].get(name, [])
    steps = [s for s in raw_steps if isinstance(s, dict)]
    if "timeout-minutes" not in job:
        out.append(_finding("job-timeout", where, "job has no timeout-minutes (default is 6 hours)", line=at))
    if not top_concurrency and "concurrency" not in job:
        out.append(_finding("concurrency", where, "no concurrency group: superseded runs keep running", "low", at))
    for i, step in enumerate(raw_steps):
        u = str(step.get("uses", "")) if isinstance(step, dict) else ""
        if u and not u.startswith("./") and not _SHA.search(u):
            line = step_lines[i] if i < len(step_lines) else at
            out.append(_finding("unpinned-action", where, f"{u} is not pinned to a commit SHA", "high", line))
    setups = [s for s in steps if str(s.get("uses", "")).startswith(_SETUP_WITH_CACHE)]
    cached = any(str(s.get("uses", "")).startswith("actions/cache") for s in steps) or any(
        isinstance(s.get("with"), dict) and s["with"].get("cache") for s in setups
    )
    installs = any(re.search(r"\b(pip|npm|yarn|pnpm) (install|ci)\b", str(s.get("run", ""))) for s in steps)
    if installs and not cached:
        out.append(_finding("no-dependency-cache", where, "dependencies are installed without a cache", line=at))
    runs_tests = any(
        re.search(r"\b(pytest|tox|nox|npm test|npm run test|go test|cargo test)\b", str(s.get("run", "")))
        for s in steps
    )
    if runs_tests and not (isinstance(job.get("strategy"), dict) and job["strategy"].get("matrix")):
        out.append(_finding("no-test-matrix", where, "tests run on one version only: no strategy.matrix", "low", at))
    return out


def audit_workflow(path: Path, rel: str) -> tuple[list[dict[str, Any]], int]:
    """Findings for one workflow file and its number of jobs."""
    doc, problem = load_workflow(path)
    lines = workflow_lines(path)
    if doc is None:
        rule = "invalid-yaml" if problem and problem.startswith("not valid YAML") else "no-jobs"
        return [_finding(rule, rel, str(problem), "high")], 0
    jobs: dict[str, Any] = doc["jobs"]
    findings = []
    if doc.get("permissions") in (None, "write-all"):
        what = "write-all" if doc.get("permissions") == "write-all" else "not set (token gets the repo default)"
        message = f"top-level permissions {what}; grant the least needed"
        findings.append(_finding("permissions", rel, message, "high", lines["permissions"]))
    for name, job in jobs.items():
        if isinstance(job, dict):
            findings += _job_findings(rel, name, job, "concurrency" in doc, lines)
            needs = job.get("needs")
            needed = [needs] if isinstance(needs, str) else list(needs or [])
            text = yaml.safe_dump(job)
            for dep in needed:
                if f"needs.{dep}." not in text:
                    findings.append(
                        _finding(
                            "needless-sequence",
                            f"{rel}:jobs.{name}",
                            f"waits for {dep} but uses none of its outputs: could run in parallel",
                            "low",
                            lines["jobs"].get(name, 1),
                        )
                    )
    return findings, len(jobs)


def audit(root: Path) -> Output:
    """Findings for every workflow under .github/workflows."""
    files = workflow_files(root)
    if not files:
        raise TaskFailed(f"no workflows under {root / '.github' / 'workflows'}", retryable=False)
    findings: list[dict[str, Any]] = []
    jobs = 0
    for path in files:
        found, n = audit_workflow(path, str(path.relative_to(root)))
        findings += found
        jobs += n
    return {
        "repository": root.name,
        "workflows": len(files),
        "jobs": jobs,
        "findings": findings,
        "by_rule": count_by(findings, "rule"),
    }


@task_kind("cicd.workflows")
async def workflows_task(ctx: TaskContext) -> Output:
    """Workflow analysis over the task's repository, and a proposed patch per workflow written under the run's
    directory (nothing in the repository changes)."""
    root = ctx.require_target()
    result = await asyncio.to_thread(audit, root)
    out_dir = ctx.services.state_dir / "runs" / ctx.run_id / "cicd" / root.name
    patches = []
    for path in workflow_files(root):
        rel = str(path.relative_to(root))
        diff, changes = await asyncio.to_thread(propose_patch, path, rel)
        if diff:
            out_dir.mkdir(parents=True, exist_ok=True)
            target = out_dir / f"{path.stem}.patch"
            target.write_text(diff)
            patches.append({"workflow": rel, "patch": str(target), "changes": changes})
    result["patches"] = patches
    result["improvements"] = sum(len([c for c in p["changes"] if not c.startswith("note:")]) for p in patches)
    return result


def zizmor_findings(report: list[dict[str, Any]], root: Path) -> list[dict[str, Any]]:
    """zizmor's JSON findings as Cortex findings (the first location: file, line, the YAML it points at)."""
    out = []
    for item in report:
        loc = (item.get("locations") or [{}])[0]
        key = loc.get("symbolic", {}).get("key", {}).get("Local", {}).get("verbatim_path", "")
        concrete = loc.get("concrete", {})
        det = item.get("determinations", {})
        out.append(
            {
                "tool": "zizmor",
                "rule": item.get("ident", ""),
                "id": item.get("ident", ""),
                "severity": str(det.get("severity", "unknown")).lower(),
                "confidence": str(det.get("confidence", "")).lower(),
                "where": f"{key}:{concrete.get('location', {}).get('start_point', {}).get('row', -1) + 1}",
                "file": key,
                "line": concrete.get("location", {}).get("start_point", {}).get("row", -1) + 1 or None,
                "feature": concrete.get("feature", ""),
                "message": item.get("desc", ""),
            }
        )
    return sorted(out, key=lambda f: (f["where"], f["rule"]))


@task_kind("cicd.workflow-security")
async def zizmor_task(ctx: TaskContext) -> Output:
    """zizmor (offline) over the target's workflows: unpinned actions, excessive permissions, credential
    persistence and the rest of its audits. Its exit code encodes the worst severity found, so success is
    judged by whether it printed a JSON report."""
    import shutil
    import sys

    from cortex.toolset.builtin import run_argv

    root = ctx.require_target()
    files = [str(p.relative_to(root)) for p in workflow_files(root)]
    if not files:
        raise TaskFailed("no workflows under .github/workflows", retryable=False)
    exe = shutil.which("zizmor", path=str(Path(sys.executable).parent)) or shutil.which("zizmor")
    if exe is None:
        raise TaskFailed("zizmor not found (it is a dependency of cortex: reinstall the project)", retryable=False)
    try:
        code, out, err = await run_argv([exe, "--offline", "--format", "json", *files], str(root), ctx.task.timeout_s)
    except TimeoutError as exc:
        raise TaskFailed(f"zizmor timed out after {ctx.task.timeout_s:.0f} s") from exc
    try:
        report = json.loads(out)
    except json.JSONDecodeError as exc:
        raise TaskFailed(f"zizmor exited with {code}: {(err or out).strip()[-500:]}") from exc
    findings = zizmor_findings(report, root)
    return {
        "repository": root.name,
        "workflows": len(files),
        "findings": findings,
        "by_rule": count_by(findings, "rule"),
    }


def _patch_job(name: str, job: Any, rel: str) -> list[str]:
    """Edit one job of a round-tripped workflow in place; the changes (and notes) made."""
    from ruamel.yaml.comments import CommentedMap

    changes = []
    if "timeout-minutes" not in job:
        job["timeout-minutes"] = 30
        changes.append(f"jobs.{name}: timeout-minutes: 30")
    needs = job.get("needs")
    if isinstance(needs, str) and f"needs.{needs}." not in yaml.safe_dump(json.loads(json.dumps(job))):
        del job["needs"]
        changes.append(f"jobs.{name}: no longer waits for {needs} (uses none of its outputs)")
    steps = [s for s in job.get("steps", []) or [] if isinstance(s, dict)]
    no_lines = WorkflowLines(permissions=1, jobs={}, steps={})
    if any(f["rule"] == "no-test-matrix" for f in _job_findings(rel, name, dict(job), True, no_lines)):
        changes.append(
            f"note: jobs.{name} runs tests on one version; add a strategy.matrix of the versions you support"
        )
    setups = [s for s in steps if str(s.get("uses", "")).startswith(_SETUP_WITH_CACHE)]
    installs = any(re.search(r"\b(pip|npm|yarn|pnpm) (install|ci)\b", str(s.get("run", ""))) for s in steps)
    if installs and not setups:
        changes.append(f"note: jobs.{name} installs without a setup action to cache for; add one with cache")
    for step in steps:
        uses = str(step.get("uses", ""))
        cache = {"actions/setup-python": "pip", "actions/setup-node": "npm"}.get(uses.split("@")[0])
        if cache and not (isinstance(step.get("with"), dict) and step["with"].get("cache")):
            step.setdefault("with", CommentedMap())["cache"] = cache
            changes.append(f"jobs.{name}: {uses.split('@')[0]} caches {cache} downloads")
        if uses and not uses.startswith("./") and not _SHA.search(uses):
            changes.append(f"note: pin {uses} to a commit SHA (resolving the tag needs the network)")
    return changes


def propose_patch(path: Path, rel: str) -> tuple[str, list[str]]:
    """A unified diff that fixes what can be fixed offline, and the list of changes (and notes) it makes.

    Round-trips the YAML with ruamel so comments and layout survive; the edited text must still parse.
    """
    import difflib
    import io

    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

    y = YAML()
    y.preserve_quotes = True
    y.width = 4096
    y.indent(mapping=2, sequence=4, offset=2)  # the usual layout of GitHub workflows
    original = path.read_text(encoding="utf-8")
    doc = y.load(original)
    if not isinstance(doc, dict) or not isinstance(doc.get("jobs"), dict):
        return "", []
    changes: list[str] = []
    if doc.get("permissions") in (None, "write-all"):
        doc["permissions"] = CommentedMap([("contents", "read")])
        changes.append("permissions: contents: read (least privilege)")
    jobs = doc["jobs"]
    if "concurrency" not in doc and not all(isinstance(j, dict) and "concurrency" in j for j in jobs.values()):
        doc["concurrency"] = CommentedMap(
            [("group", "${{ github.workflow }}-${{ github.ref }}"), ("cancel-in-progress", True)]
        )
        changes.append("concurrency group cancelling superseded runs")
    for name, job in jobs.items():
        if isinstance(job, dict):
            changes += _patch_job(str(name), job, rel)
    buffer = io.StringIO()
    y.dump(doc, buffer)
    edited = buffer.getvalue()
    yaml.safe_load(edited)  # the proposal must still be a valid workflow document
    diff = "".join(
        difflib.unified_diff(
            original.splitlines(keepends=True), edited.splitlines(keepends=True), fromfile=f"a/{rel}", tofile=f"b/{rel}"
        )
    )
    return diff, changes
