"""Finding the handler of a task kind. Importing a toolset module registers its handlers (``task_kind``); this
module imports them all on first use, and the agent tasks only when one is asked for."""

from __future__ import annotations

import asyncio
import importlib

from cortex.toolset.context import HANDLERS, Handler

LAZY_KINDS = dict.fromkeys(("development.fix-tests", "review.branch", "documentation.runbook"), "cortex.agents.tasks")
"""Kinds whose module is imported on first use: the agent layer costs over a second of imports, paid only by a
worker that runs a task needing a model."""


_loaded = False


def handler_for(kind: str) -> Handler | None:
    """The handler of ``kind``, importing the toolset modules on first use (all of them: a module imported on its
    own before, such as by a test, registers only its own handlers)."""
    global _loaded
    if not _loaded:
        _loaded = True
        from cortex.toolset import (  # noqa: F401  (importing registers the handlers)
            aggregate,
            builtin,
            chaos,
            cicd,
            development,
            inventory,
            monitoring,
            security,
            testing,
        )
    if kind in LAZY_KINDS and kind not in HANDLERS:
        importlib.import_module(LAZY_KINDS[kind])
    return HANDLERS.get(kind)


async def find_handler(kind: str) -> Handler | None:
    """``handler_for`` for a running event loop: a first use imports in a thread. Importing the agent layer takes
    seconds (pydantic-ai), and a worker whose loop stalls that long lets its heartbeat lapse: the coordinator
    then hands its task to another worker while it still runs."""
    if _loaded and (kind in HANDLERS or kind not in LAZY_KINDS):
        return HANDLERS.get(kind)
    return await asyncio.to_thread(handler_for, kind)


def known_kinds() -> list[str]:
    """Every registered task kind."""
    handler_for("")
    return sorted({*HANDLERS, *LAZY_KINDS})
