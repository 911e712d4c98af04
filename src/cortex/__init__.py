"""Cortex: plan-first multi-agent orchestration over Redis."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cortex-orchestrator")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
