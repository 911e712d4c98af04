"""Constant-time token checks."""

import hmac


def same_token(given: str, expected: str) -> bool:
    """True when the tokens are equal, compared in constant time."""
    return hmac.compare_digest(given.encode(), expected.encode())


def scopes(claim: str) -> set[str]:
    """Scopes from a space-separated claim, empty entries dropped."""
    return {s for s in claim.split(" ") if s}
