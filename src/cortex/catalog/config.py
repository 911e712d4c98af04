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
    redis_max_connections: int = Field(default=32, ge=2, le=10_000)
    """Connections to Redis for requests, at most; a request waits for a free one (``redis_pool_timeout_s``) rather
    than opening more, so no client can take every connection Redis or the process allows."""
    redis_pool_timeout_s: float = Field(default=5.0, gt=0, le=300)
    """How long a request waits for a free Redis connection before it gets 503."""
    max_event_streams: int = Field(default=64, ge=1, le=10_000)
    """Open ``/events`` streams and GraphQL subscriptions, at most (each holds a Redis connection of its own, from
    a pool apart from the requests'); one more gets 503 and REST is unaffected."""
    max_query_depth: int = Field(default=12, ge=2, le=100)
    """Deepest GraphQL selection allowed."""
    max_query_aliases: int = Field(default=20, ge=1, le=1000)
    """Most aliases in one GraphQL document."""
    max_query_tokens: int = Field(default=2000, ge=50, le=100_000)
    """Most tokens in one GraphQL document (checked before it is parsed)."""
    max_query_cost: int = Field(default=100_000, ge=1)
    """Most resolver calls a GraphQL query may cause in the worst case: each field costs 1, and a list multiplies
    the cost of what it selects by how many items it may return (``lineage`` up to ``max_nodes``, ``assets`` and
    ``search`` their page size), so nested lineage is refused before it runs."""


def new_token(name: str, scopes: list[Scope]) -> tuple[str, TokenSpec]:
    """A fresh random token and the configuration entry that accepts it."""
    token = secrets.token_urlsafe(32)
    return token, TokenSpec(name=name, sha256=hashlib.sha256(token.encode()).hexdigest(), scopes=scopes)
