"""Every tool's findings as ``Finding``s: one shape, with their locations, and one finding where two tools report
the same problem (Cortex's workflow rules and zizmor both see an unpinned action, or unset permissions, on the
same line)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cortex.models.findings import Finding
from cortex.models.report import TaskReport

SAME_AS = {"unpinned-uses": "unpinned-action", "excessive-permissions": "permissions"}
"""zizmor's rule -> Cortex's rule for the same problem."""
KIND_ORDER = ("vulnerability", "secret", "code", "manifest", "workflow", "test")
SEVERITY_ORDER = ("critical", "high", "medium", "low", "unknown")


def _line(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and value > 0 else None


def _one(kind: str, repo: str, task: str, f: dict[str, Any]) -> Finding | None:
    """One raw finding of a task of ``kind`` as a ``Finding`` (None for what is not a finding)."""
    tool = str(f.get("tool", "cortex"))
    base: dict[str, Any] = {"repository": repo, "tasks": [task], "severity": str(f.get("severity", "unknown"))}
    if kind == "security.dependency-audit":
        return Finding(
            **base,
            kind="vulnerability",
            rule=str(f["id"]),
            title=str(f.get("summary", "")),
            sources=[tool],
            package=str(f["package"]),
            ecosystem=str(f["ecosystem"]),
            installed=str(f["version"]),
            fixed_in=str(f.get("fixed") or ""),
            aliases=sorted(set(f.get("ids", [])) - {f["id"]}),
            file=str(f.get("source")) if f.get("source") else None,
        )
    if kind in ("security.static-analysis", "security.secrets", "inventory.discover"):
        family = {"security.static-analysis": "code", "security.secrets": "secret", "inventory.discover": "manifest"}
        return Finding(
            **base,
            kind=family[kind],
            rule=str(f.get("id", "")),
            title=str(f.get("summary", f.get("rule", ""))),
            sources=[tool],
            file=str(f["file"]) if f.get("file") else None,
            line=_line(f.get("line")),
        )
    if kind in ("cicd.workflows", "cicd.workflow-security"):
        rule = str(f.get("rule", ""))
        return Finding(
            **base,
            kind="workflow",
            rule=SAME_AS.get(rule, rule),
            title=str(f.get("message", "")),
            sources=[tool],
            file=str(f.get("file") or str(f.get("where", "")).split(":", 1)[0]) or None,
            line=_line(f.get("line")),
        )
    return None


def task_findings(rec: TaskReport) -> list[Finding]:
    """The findings of one task that succeeded (failing and flaky tests included)."""
    if rec.state.value != "succeeded" or not rec.target:
        return []
    out = rec.output
    found = [_one(rec.kind, rec.target, rec.id, f) for f in _list(out.get("findings")) if isinstance(f, dict)]
    result = [f for f in found if f is not None]
    if rec.kind in ("testing.pytest", "testing.npm"):
        for state, severity in (("failing", "high"), ("flaky", "low")):
            for test in _list(out.get(state)):
                title = "fails on every re-run" if state == "failing" else "failed, then passed when run again"
                result.append(
                    Finding(
                        repository=rec.target,
                        kind="test",
                        rule=state,
                        title=title,
                        severity=severity,
                        sources=[rec.kind.split(".")[1]],
                        tasks=[rec.id],
                        test=str(test),
                    )  # fmt: skip
                )
    return result


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def merged(findings: Iterable[Finding]) -> list[Finding]:
    """One finding per problem: workflow findings of the same rule on the same file and line are one, with every
    tool that reported it; the rest stay as they are. Sorted for reading: kind, severity, file, line."""
    by_key: dict[tuple[object, ...], Finding] = {}
    out: list[Finding] = []
    for f in findings:
        if f.kind == "secret":  # one secret flagged by several detectors (a token's pattern, its entropy)
            key: tuple[object, ...] = (f.repository, "secret", f.file, f.line)
            if key in by_key:
                _also(by_key[key], f)
                continue
            by_key[key] = f
            out.append(f)
            continue
        if f.kind != "workflow":
            out.append(f)
            continue
        key = (f.repository, f.file, f.line, f.rule)
        if key in by_key:
            first = by_key[key]
            first.sources = sorted(set(first.sources) | set(f.sources))
            first.tasks = sorted(set(first.tasks) | set(f.tasks))
            if SEVERITY_ORDER.index(_sev(f.severity)) < SEVERITY_ORDER.index(_sev(first.severity)):
                first.severity = f.severity
            continue
        by_key[key] = f
        out.append(f)
    return sorted(
        out,
        key=lambda f: (
            KIND_ORDER.index(f.kind),
            SEVERITY_ORDER.index(_sev(f.severity)),
            f.file or "",
            f.line or 0,
            f.rule,
            f.test or "",
        ),
    )


def _also(first: Finding, other: Finding) -> None:
    """Fold ``other`` (the same secret seen by another detector) into ``first``, the most specific name kept."""
    generic = "High Entropy"
    if generic in first.rule and generic not in other.rule:
        first.rule, other = other.rule, first.model_copy()
    first.title = f"{first.rule} (also flagged as {other.rule}; value redacted)"
    first.sources = sorted(set(first.sources) | set(other.sources))


def _sev(severity: str) -> str:
    return severity if severity in SEVERITY_ORDER else "unknown"


def by_repository(records: Iterable[TaskReport]) -> dict[str, list[Finding]]:
    """Every finding of the run, merged, per repository; fix branches attached to what they fix."""
    records = list(records)
    all_found = merged(f for rec in records for f in task_findings(rec))
    branches = {
        (r.target, str(r.output.get("package")).lower()): str(r.output["branch"])
        for r in records
        if r.kind == "development.bump-pin" and r.state.value == "succeeded" and r.output.get("branch")
    }
    out: dict[str, list[Finding]] = {}
    for f in all_found:
        if f.kind == "vulnerability" and f.package:
            f.fix_branch = branches.get((f.repository, f.package.lower()))
        out.setdefault(f.repository, []).append(f)
    return dict(sorted(out.items()))
