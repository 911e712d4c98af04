"""The ground floor of files: atomic writes, reading JSON, and walking a tree without leaving it.

Everything above (models, planner, catalog, toolset, runtime) uses these; this module imports nothing of Cortex.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SKIP_DIRS = frozenset({".git", "node_modules", ".venv", "venv", "__pycache__", ".tox", "dist", "build"})
"""Directories a walk over a repository never enters: version control, vendored and built files."""


def write_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temp file in the same directory and an atomic rename: a reader sees the
    old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; these files are meant to be read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: Path, data: Any) -> Path:
    """``data`` as indented JSON, atomically."""
    return write_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path) -> Any:
    """The JSON in ``path``, or None when the file does not exist."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def walk_files(root: Path) -> Iterator[Path]:
    """Files under ``root`` in sorted order, skipping ``SKIP_DIRS`` and any symlink (a link could lead outside
    the tree, and whatever reads these files stays confined to it)."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not Path(dirpath, d).is_symlink())
        for name in sorted(filenames):
            path = Path(dirpath, name)
            if not path.is_symlink() and path.is_file():
                yield path


def regular_file(path: Path) -> bool:
    """``path`` is a file and not a symbolic link: what a reader that stays in its tree opens by name."""
    return not path.is_symlink() and path.is_file()


def regular_dir(path: Path) -> bool:
    """``path`` is a directory and not a symbolic link."""
    return not path.is_symlink() and path.is_dir()


def links_outside(root: Path, *, limit: int = 100) -> list[tuple[str, str]]:
    """Symbolic links under ``root`` (none followed) whose destination is outside ``root``: ``(path relative to
    root, where it points)``, at most ``limit``. Tools Cortex runs over ``root`` are told to leave them alone."""
    top = root.resolve()
    found: list[tuple[str, str]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for name in sorted([*dirnames, *filenames]):
            path = Path(dirpath, name)
            if not path.is_symlink():
                continue
            if not path.resolve().is_relative_to(top):
                found.append((str(path.relative_to(root)), os.readlink(path)))
                if len(found) >= limit:
                    return found
    return found
