"""Catalog models: assets, their health, and lineage edges between them."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

ASSET_ID = r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,255}$"
"""Asset ids: printable, no spaces, up to 256 characters (``repo:payments-api``, ``pkg:pypi:requests``)."""


class HealthStatus(StrEnum):
    """What the last check said about an asset."""

    healthy = "healthy"
    degraded = "degraded"
    failing = "failing"
    unknown = "unknown"
    removed = "removed"
    """The asset vanished from the fleet; kept for lineage and history."""


class Health(BaseModel):
    """Health of an asset: status, the signals it was derived from, and when it was checked."""

    model_config = ConfigDict(extra="forbid")

    status: HealthStatus = HealthStatus.unknown
    signals: dict[str, Any] = Field(default_factory=dict)
    checked_at: float | None = None


class Sensitivity(StrEnum):
    """How carefully an asset's data must be handled."""

    public = "public"
    internal = "internal"
    confidential = "confidential"
    restricted = "restricted"


_TAG = re.compile(r"^[a-z0-9][a-z0-9._:-]{0,62}$")


class Asset(BaseModel):
    """One thing the catalog knows about: a repository, package, image, workload, service, workflow..."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=ASSET_ID)
    type: str = Field(pattern=r"^[a-z][a-z0-9-]{0,31}$")
    name: str = Field(min_length=1, max_length=256)
    namespace: str = Field(default="default", pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")
    owner: str = Field(default="unowned", min_length=1, max_length=128)
    tags: list[str] = Field(default_factory=list, max_length=64)
    sensitivity: Sensitivity = Sensitivity.internal
    health: Health = Field(default_factory=Health)
    metadata: dict[str, Any] = Field(default_factory=dict)
    source: str | None = Field(default=None, max_length=2048)
    """Path or URL the asset was discovered at."""
    checksum: str | None = Field(default=None, max_length=128)
    discovered_at: float | None = None
    updated_at: float | None = None

    @field_validator("tags")
    @classmethod
    def _tags(cls, tags: list[str]) -> list[str]:
        bad = [t for t in tags if not _TAG.match(t)]
        if bad:
            raise ValueError(f"tags must be lowercase words (a-z, 0-9, . _ : -), got {bad[0]!r}")
        return sorted(set(tags))


class LineageEdge(BaseModel):
    """``upstream`` feeds ``downstream`` (a repository produces an image, a workload runs an image...)."""

    model_config = ConfigDict(extra="forbid")

    upstream: str = Field(pattern=ASSET_ID)
    downstream: str = Field(pattern=ASSET_ID)
    relation: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    run_id: str | None = None
    task_id: str | None = None
    agent: str | None = None
    """The worker or master that recorded the edge."""
