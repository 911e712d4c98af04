"""Bearer-token authentication with read and write scopes, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from cortex.catalog.config import CatalogConfig, Scope
from cortex.errors import AuthError


@dataclass(frozen=True)
class Principal:
    """Who is calling and what they may do."""

    name: str
    scopes: frozenset[str]


ANONYMOUS = Principal("anonymous", frozenset())


def identify(config: CatalogConfig, authorization: str | None) -> Principal:
    """The principal of an ``Authorization`` header. Every configured digest is compared (no early exit), so the
    time taken does not tell which token came close."""
    if not authorization:
        return ANONYMOUS
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise AuthError(401, "Authorization must be 'Bearer <token>'")
    given = hashlib.sha256(token.strip().encode()).hexdigest().encode()
    found: Principal | None = None
    for spec in config.tokens:
        if hmac.compare_digest(given, spec.sha256.encode()):
            found = Principal(spec.name, frozenset(spec.scopes))
    if found is None:
        raise AuthError(401, "unknown token")
    return found


def require(config: CatalogConfig, principal: Principal, scope: Scope) -> None:
    """Raise ``AuthError`` unless ``principal`` may act with ``scope``."""
    if scope == "read" and config.read_open:
        return
    if principal is ANONYMOUS:
        raise AuthError(401, f"a bearer token with the {scope!r} scope is required")
    if scope not in principal.scopes:
        raise AuthError(403, f"token {principal.name!r} lacks the {scope!r} scope")
