"""Findings a person can act on: one model for what every tool reports, each with its location.

A vulnerable package names the advisory, its aliases, the severity, the installed and fixed versions and the
manifest; a code or secret finding names the file and line (a secret never its value); a test names the test; a
workflow finding names the file and line. One problem reported by two tools is one finding with both in
``sources``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

FindingKind = Literal["vulnerability", "code", "secret", "test", "workflow", "manifest"]


class Finding(BaseModel):
    """One finding in one repository."""

    model_config = ConfigDict(extra="forbid")

    repository: str
    kind: FindingKind
    rule: str
    """Advisory id, bandit test id, secret type, workflow rule, ``failing``/``flaky`` for tests."""
    title: str
    severity: str
    sources: list[str]
    """The tools that reported it."""
    tasks: list[str] = Field(default_factory=list)
    """The tasks whose output it came from."""
    file: str | None = None
    line: int | None = None
    test: str | None = None
    """The test's id (pytest node id), for test findings."""
    package: str | None = None
    ecosystem: str | None = None
    installed: str | None = None
    """The version in use."""
    fixed_in: str | None = None
    """The lowest version that fixes it (empty when none is known)."""
    aliases: list[str] = Field(default_factory=list)
    fix_branch: str | None = None
    """The branch Cortex made to fix it, when it made one."""


class OsvDatabase(BaseModel):
    """Which OSV data a dependency audit used."""

    model_config = ConfigDict(extra="forbid")

    source: str
    records: int
    ecosystems: dict[str, int] = Field(default_factory=dict)
    """Records per ecosystem."""
    newest_modified: str | None = None
    """The newest ``modified`` date of its records: how current it is."""
    bundled_subset: bool = False
    """The small subset shipped for the demo fleet: a clean result then means "unknown", not "safe"."""
    online: str | None = None
    """The API also asked, when one was configured."""
