"""Which vulnerable pins Cortex can fix, and why the others cannot be: one handoff to development per pin whose
advisories all have a fixed version (bump to the lowest version that fixes every one), and an ``unfixable`` entry
with the reason for every other (no fixed version, an ecosystem Cortex makes no branches for, a major-version jump
the policy forbids)."""

from __future__ import annotations

from typing import Any

import semver
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

FIXABLE = ("PyPI", "npm")


def _version(ecosystem: str, text: str) -> Any:
    return Version(text) if ecosystem == "PyPI" else semver.Version.parse(text.lstrip("v"))


def _major(ecosystem: str, text: str) -> int:
    v = _version(ecosystem, text)
    return int(v.major)


def plan_fixes(
    findings: list[dict[str, Any]], *, allow_major: bool = True
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Handoffs for the pins that can be fixed, and the pins that cannot, each with its reason."""
    by_pin: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    for f in findings:
        by_pin.setdefault((f["ecosystem"], f["package"], f["version"], f["source"]), []).append(f)
    handoffs, unfixable = [], []
    for (ecosystem, package, version, source), group in sorted(by_pin.items()):
        ids = [f["id"] for f in group]
        base = {"ecosystem": ecosystem, "package": package, "version": version, "file": source, "advisories": ids}
        missing = [f["id"] for f in group if not f["fixed"]]
        if missing:
            unfixable.append({**base, "reason": f"no fixed version is known for {', '.join(missing)}"})
            continue
        try:
            target = max((f["fixed"] for f in group), key=lambda v: _version(ecosystem, v))
            major = _major(ecosystem, target) > _major(ecosystem, version)
        except (InvalidVersion, ValueError):
            unfixable.append({**base, "reason": "the versions do not follow the ecosystem's scheme"})
            continue
        if ecosystem not in FIXABLE:
            why = f"Cortex makes fix branches for {' and '.join(FIXABLE)} pins; bump to {target} by hand"
            unfixable.append({**base, "fixed_in": target, "reason": why})
            continue
        if major and not allow_major:
            why = f"{target} is a major version jump from {version}, which the policy forbids (allow_major)"
            unfixable.append({**base, "fixed_in": target, "reason": why})
            continue
        handoffs.append(
            {
                "to": "development",
                "kind": "development.bump-pin",
                "worker_type": "implementation",
                "key": canonicalize_name(package) if ecosystem == "PyPI" else package.lower().replace("/", "-"),
                "estimate_tokens": 0,
                "estimate_seconds": 30,
                "reason": f"{package} {version} has {len(group)} advisory(ies) fixed in {target}"
                + (" (a major version jump)" if major else ""),
                "params": {
                    "ecosystem": ecosystem,
                    "package": package,
                    "from": version,
                    "to": target,
                    "file": source,
                    "major": major,
                    "advisories": [{"id": f["id"], "severity": f["severity"], "summary": f["summary"]} for f in group],
                },
            }
        )
    return handoffs, unfixable
