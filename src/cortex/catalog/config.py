"""Catalog service configuration: tokens and scopes, limits. Read from a YAML file by ``cortex catalog serve``."""

from __future__ import annotations

import hashlib
import secrets
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Scope = Literal["read", "write"]


class TokenSpec(BaseModel):
    """A bearer token, stored as its SHA-256 digest so the configuration file holds no secret."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    """Who the token belongs to (appears in logs instead of the token)."""
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    scopes: list[Scope] = Field(min_length=1)


class CatalogConfig(BaseModel):
    """Limits and access rules of the catalog API."""

    model_config = ConfigDict(extra="forbid")

    tokens: list[TokenSpec] = Field(default_factory=list)
    read_open: bool = False
    """Allow reads without a token. Writes always need a token with the ``write`` scope."""
    max_body_bytes: int = Field(default=1_048_576, gt=0)
    """Larger request bodies get 413."""
    max_depth: int = Field(default=5, ge=1, le=50)
    """Deepest lineage walk allowed; deeper gets 400."""
    max_nodes: int = Field(default=1000, ge=1)
    """Most assets a lineage answer holds; the walk stops there."""
    max_limit: int = Field(default=500, ge=1)
    """Largest page size allowed; larger gets 400."""
    prefix: str = "cortex:catalog"
    """Redis key prefix of the catalog."""


def new_token(name: str, scopes: list[Scope]) -> tuple[str, TokenSpec]:
    """A fresh random token and the configuration entry that accepts it."""
    token = secrets.token_urlsafe(32)
    return token, TokenSpec(name=name, sha256=hashlib.sha256(token.encode()).hexdigest(), scopes=scopes)
