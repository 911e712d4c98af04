"""Working copies of the fleet: git repositories under the state directory; the source is never touched."""

from __future__ import annotations

import subprocess
from pathlib import Path

from cortex.toolset.fleet import working_copy

from .conftest import FLEET


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_working_copy_is_one_committed_git_repository_per_target(tmp_path: Path) -> None:
    before = _files(FLEET)
    copy = working_copy(FLEET, tmp_path / "fleet")
    repos = sorted(p.name for p in copy.iterdir())
    assert repos == ["auth-lib", "billing-worker", "edge-proxy", "inventory-service", "payments-api", "web-frontend"]
    for repo in repos:
        status = subprocess.run(
            ["git", "status", "--porcelain"], cwd=copy / repo, capture_output=True, text=True, check=True, timeout=30
        )
        assert status.stdout == ""  # everything committed
        log = subprocess.run(
            ["git", "log", "--oneline"], cwd=copy / repo, capture_output=True, text=True, check=True, timeout=30
        )
        assert len(log.stdout.splitlines()) == 1
    (copy / "auth-lib" / "scratch.txt").write_text("x")
    again = working_copy(FLEET, tmp_path / "fleet")  # a new copy replaces the old one
    assert not (again / "auth-lib" / "scratch.txt").exists()
    assert _files(FLEET) == before
