"""CI/CD proposals: each workflow's patch applies with git and removes the findings it targets."""

from __future__ import annotations

import subprocess
from pathlib import Path

from cortex.toolset.cicd import audit, propose_patch
from cortex.toolset.fleet import working_copy

from .conftest import FLEET


def test_proposed_patches_apply_and_fix_what_they_claim(tmp_path: Path) -> None:
    fleet = working_copy(FLEET, tmp_path / "fleet")
    for repo in ("payments-api", "inventory-service", "web-frontend"):
        root = fleet / repo
        before = {(f["rule"], f["where"]) for f in audit(root)["findings"]}
        notes: list[str] = []
        for wf in sorted((root / ".github" / "workflows").glob("*.y*ml")):
            rel = str(wf.relative_to(root))
            diff, changes = propose_patch(wf, rel)
            assert diff and changes
            notes += [c for c in changes if c.startswith("note:")]
            patch = tmp_path / f"{repo}-{wf.stem}.patch"
            patch.write_text(diff)
            subprocess.run(["git", "apply", str(patch)], cwd=root, check=True, timeout=30)
        after = {(f["rule"], f["where"]) for f in audit(root)["findings"]}
        fixed = {rule for rule, _ in before - after}
        assert after < before, repo
        # what is left is what the patch says it cannot do offline or minimally, each with a note
        assert {rule for rule, _ in after} <= {"unpinned-action", "no-dependency-cache", "no-test-matrix"}, after
        for rule, where in after:
            job = where.rsplit("jobs.", 1)[1]
            word = {"unpinned-action": "pin", "no-dependency-cache": "setup action", "no-test-matrix": "matrix"}[rule]
            assert any(word in n and (rule == "unpinned-action" or f"jobs.{job}" in n) for n in notes), (rule, where)
        assert fixed >= {"job-timeout"} or repo == "inventory-service"
