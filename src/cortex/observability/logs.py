"""Structured logs: one JSON object per line, one file per process. A run's coordinator writes
``<state>/runs/<run id>/logs/coordinator.jsonl``, each master and worker ``.../logs/<process id>.jsonl`` on its own
node, each node agent ``<state>/logs/node-<name>.jsonl``; the report lists where they are. The level comes from
``--log-level`` (``CORTEX_LOG_LEVEL``, inherited by every process a command starts). Credentials in URLs are
redacted before a line is written."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

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
        line = json.dumps(doc, default=str, sort_keys=False)
        return _USERINFO.sub(r"\1***@", line) if "://" in line else line


def attach(path: Path, process: str, level: str = "info") -> logging.Handler:
    """Write the ``cortex`` logger's records at ``level`` and above to ``path`` (appending); returns the handler,
    for ``detach``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
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
