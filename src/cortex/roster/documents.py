"""Reading the files users hand Cortex (plans, rosters, clusters, configs, price tables): bounded in size, UTF-8,
JSON or YAML, every failure an ``InputError`` that names the file and says what is wrong, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from cortex.errors import InputError

MAX_DOCUMENT_BYTES = 64 * 2**20
"""No input file Cortex reads is this large; a bigger one is a mistake (or an attack), refused before parsing."""

_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader parses several times faster than the pure-Python one; same semantics."""


def read_text(path: Path, what: str, *, hint: str = "check the path", max_bytes: int = MAX_DOCUMENT_BYTES) -> str:
    """The text of ``path`` (``what`` it is, for the message), or an ``InputError``: missing, unreadable, a
    directory, too large, or not UTF-8."""
    try:
        with path.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise InputError(str(path), f"cannot read {what}: {exc.strerror or exc}", hint=hint) from None
    if len(data) > max_bytes:
        raise InputError(str(path), f"the {what} is larger than {max_bytes // 2**20} MiB", hint="is it the right file?")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            str(path), f"the {what} is not UTF-8 text (byte {exc.start} is not)", hint="is it the right file?"
        ) from None


def parse_json(text: str, source: str) -> Any:
    """JSON, or an ``InputError`` with the line and column (or the nesting that is too deep)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(source, f"not valid JSON: {exc.msg}", field=f"line {exc.lineno}, column {exc.colno}") from None
    except RecursionError:
        raise InputError(source, "not accepted: JSON nested too deeply") from None


def parse_yaml(text: str, source: str) -> Any:
    """YAML (JSON is YAML), or an ``InputError`` with the line and column."""
    try:
        return yaml.load(text, Loader=_SafeLoader)  # noqa: S506  (a safe loader, the C one when available)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise InputError(source, f"not valid YAML/JSON: {problem}", field=where) from None
    except RecursionError:
        raise InputError(source, "not accepted: YAML nested too deeply") from None
