"""Structured logs: one JSON object per line, one file per process. A run's coordinator writes
``<state>/runs/<run id>/logs/coordinator.jsonl``, each master and worker ``.../logs/<process id>.jsonl`` on its own
node, each node agent ``<state>/logs/node-<name>.jsonl``; the report lists where they are. The level comes from
``--log-level`` (``CORTEX_LOG_LEVEL``, inherited by every process a command starts). Credentials in URLs are
redacted before a line is written."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import Any

from pydantic_core import to_json

LOGGER = "cortex"
LEVELS = ("debug", "info", "warning", "error")
_USERINFO = re.compile(r"(\w+://)[^/@\s]*@")


class JsonLines(logging.Formatter):
    """``{"ts", "level", "process", "event", ...fields}``, one line per record."""

    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "process": self.process,
            "event": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            doc["error"] = self.formatException(record.exc_info)
        # pydantic-core's encoder: a third of the time of ``json.dumps`` (which also built an encoder per line)
        line = to_json(doc, fallback=str).decode()
        return _USERINFO.sub(r"\1***@", line) if "://" in line else line


FLUSH_AFTER_S = 0.05
"""Lines below WARNING written while an event loop runs reach the file within this (one write for many)."""


class JsonLinesFile(logging.FileHandler):
    """A log file written a batch at a time: under a running event loop, a line below WARNING is flushed with
    the others written in the next ``FLUSH_AFTER_S`` (a flush per line was a tenth of a worker's time per no-op
    task); a WARNING or worse, and any line outside an event loop, is flushed at once. A process killed by a
    signal may lose its last ``FLUSH_AFTER_S`` of lines below WARNING; the run's events stream is the record."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, encoding="utf-8")
        self._due: asyncio.TimerHandle | None = None
        self._due_loop: asyncio.AbstractEventLoop | None = None
        self._holding = False

    def emit(self, record: logging.LogRecord) -> None:
        self._holding = False
        if record.levelno < logging.WARNING:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not None:
                self._holding = True
                if self._due is None or self._due_loop is not loop:  # none yet, or one a finished loop dropped
                    self._due, self._due_loop = loop.call_later(FLUSH_AFTER_S, self._flush_due), loop
        super().emit(record)  # writes, then calls ``flush``

    def flush(self) -> None:
        if not self._holding:
            super().flush()

    def _flush_due(self) -> None:
        self._due, self._holding = None, False
        self.flush()

    def close(self) -> None:
        if self._due is not None:
            self._due.cancel()
            self._due = None
        self._holding = False
        super().close()


def attach(path: Path, process: str, level: str = "info") -> logging.Handler:
    """Write the ``cortex`` logger's records at ``level`` and above to ``path`` (appending); returns the handler,
    for ``detach``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = JsonLinesFile(path)
    handler.setFormatter(JsonLines(process))
    handler.setLevel(level.upper())
    logger = logging.getLogger(LOGGER)
    logger.addHandler(handler)
    logger.setLevel(min(logger.level or logging.WARNING, handler.level))
    logger.propagate = False  # never onto a terminal a live display owns
    return handler


def detach(handler: logging.Handler) -> None:
    """Stop writing through ``handler`` and close its file."""
    logging.getLogger(LOGGER).removeHandler(handler)
    handler.close()


_logger = logging.getLogger(LOGGER)


def event(name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log ``name`` with ``fields`` (JSON-able values) on the ``cortex`` logger."""
    if _logger.isEnabledFor(level):
        # made and handled directly: ``Logger.log`` would first walk the stack for the caller's file and line,
        # which the lines do not show and which cost a worker a tenth of its time per no-op task
        _logger.handle(_logger.makeRecord(LOGGER, level, "", 0, name, (), None, extra={"fields": fields}))
