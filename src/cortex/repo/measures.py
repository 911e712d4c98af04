"""What a target measures (files, lines, tests, packages): what the planner scales learned estimates by."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from cortex.files import walk_files
from cortex.models.plan import TargetMeasures
from cortex.repo.manifests import declared_packages

LINES_MAX_BYTES = 2 * 1024 * 1024
"""Larger files (data, bundles) are counted as files, not read for lines: planning stays fast on big trees."""

_TEST_NAME = re.compile(r"^(test_.*\.py|.*_test\.(py|go)|.*\.(test|spec)\.(js|jsx|ts|tsx|mjs|cjs))$")
_TEST_DIRS = {"tests", "test", "__tests__"}


def _is_test(rel: Path) -> bool:
    if _TEST_NAME.match(rel.name):
        return True
    # a module under tests/ is a test file; its fixtures and data are not
    return rel.suffix in (".py", ".js", ".ts") and any(part in _TEST_DIRS for part in rel.parts[:-1])


def _head(root: Path) -> str:
    """The commit checked out (read from ``.git``, no subprocess), or "" when there is none to read."""
    try:
        head = (root / ".git" / "HEAD").read_text(encoding="utf-8").strip()
        if head.startswith("ref: "):
            ref = head[5:]
            loose = root / ".git" / ref
            if loose.is_file():
                return loose.read_text(encoding="utf-8").strip()
            packed = (root / ".git" / "packed-refs").read_text(encoding="utf-8")
            return next((line.split()[0] for line in packed.splitlines() if line.endswith(" " + ref)), "")
        return head
    except (OSError, UnicodeDecodeError):
        return ""


def measure(root: Path) -> TargetMeasures:
    """Count ``root``'s files, lines, test files and declared packages, and digest its state (symbolic links are
    never followed)."""
    files = lines = tests = 0
    state = hashlib.sha256(_head(root).encode())
    for path in walk_files(root):
        files += 1
        rel = path.relative_to(root)
        if _is_test(rel):
            tests += 1
        try:
            st = path.stat()
            state.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            if st.st_size <= LINES_MAX_BYTES:
                lines += path.read_bytes().count(b"\n")
        except OSError:  # vanished or unreadable while walking: counted as a file, not read
            state.update(f"{rel}\0?\n".encode())
    return TargetMeasures(
        files=files,
        lines=lines,
        tests=tests,
        packages=len(declared_packages(root).packages),
        revision=state.hexdigest()[:32],
    )
