"""Fleet files: the targets of a plan named by git remote instead of by directory (``--targets fleet.yaml``).

    targets:
      - name: web-frontend
        url: https://git.example.com/acme/web-frontend.git
        branch: main                 # optional: the remote's default branch
        credentials: GIT_TOKEN_WEB   # optional: the environment variable holding a token (or user:token)
        push: true                   # optional: push fix and runbook branches there as new branches

How they are checked out on each host is ``cortex.toolset.remotes``.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cortex.errors import InputError

_URL = re.compile(r"^(https?|git|ssh|file)://[^\s]+$|^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\s]+$")
_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
_ENV = r"^[A-Z_][A-Z0-9_]{0,127}$"


class FleetEntry(BaseModel):
    """One repository of a fleet file."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_NAME)
    url: str
    branch: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")
    credentials: str | None = Field(default=None, pattern=_ENV)
    push: bool = False

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not _URL.match(v):
            raise ValueError("must be a git URL: https://, http://, git://, ssh://, file:// or user@host:path")
        return v


class Fleet(BaseModel):
    """A fleet file: its targets, names unique."""

    model_config = ConfigDict(extra="forbid")

    targets: list[FleetEntry] = Field(min_length=1)

    @field_validator("targets")
    @classmethod
    def _unique(cls, v: list[FleetEntry]) -> list[FleetEntry]:
        names = [e.name for e in v]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"target names must be unique; repeated: {', '.join(repeated)}")
        return v


def load_fleet(path: Path) -> Fleet:
    """Read and check a fleet file; an ``InputError`` names the file and the field."""
    from cortex.roster.documents import parse_yaml, read_text

    data = parse_yaml(read_text(path, "fleet file"), str(path))
    try:
        return Fleet.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise InputError(f"{path}: {where}", str(first["msg"]).removeprefix("Value error, ")) from exc
