#!/usr/bin/env python3
"""One command runner for people and CI: ``python3 dev.py demo|test|check|bench|setup``.

It creates ``.venv`` beside this file on first use and installs the project with its dev extras into it, so the
only things a fresh machine needs are Python 3.11+ and git. Every target runs inside that environment.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
STAMP = VENV / ".cortex-installed"


def _run(*argv: str | Path) -> None:
    print("+", " ".join(str(a) for a in argv), flush=True)
    result = subprocess.run([str(a) for a in argv], cwd=ROOT, check=False)
    if result.returncode != 0:
        sys.exit(result.returncode)


def setup() -> None:
    """Create the virtual environment and install the project, unless pyproject.toml is unchanged since."""
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == digest and PY.exists():
        return
    if not PY.exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    _run(PY, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    _run(PY, "-m", "pip", "install", "--quiet", "-e", ".[dev]")
    STAMP.write_text(digest)


def main(argv: list[str]) -> None:
    target = argv[0] if argv else "help"
    rest = argv[1:]
    if target == "help":
        print(__doc__)
        return
    setup()
    if target == "setup":
        return
    if target == "demo":
        _run(BIN / "cortex", "demo", *rest)
    elif target == "test":
        _run(PY, "-m", "pytest", *rest)
    elif target == "check":
        _run(PY, "-m", "ruff", "check", "src", "tests", "bench", "dev.py")
        _run(PY, "-m", "ruff", "format", "--check", "src", "tests", "bench", "dev.py")
        _run(PY, "-m", "mypy")
        _run(BIN / "lint-imports")
    elif target == "bench":
        # bench_peers.py installs the peers it measures Cortex against (Celery, RQ, ARQ) in an environment of their
        # own: they pin redis-py below 6
        for script in sorted((ROOT / "bench").glob("bench_*.py")):
            _run(PY, script, *rest)
    else:
        sys.exit(f"unknown target {target!r}: use demo, test, check, bench or setup")


if __name__ == "__main__":
    main(sys.argv[1:])
