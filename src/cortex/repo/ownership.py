"""Who owns a repository, and what it is part of: Backstage's ``catalog-info.yaml`` (``spec.owner``,
``spec.system``, ``spec.lifecycle``) and GitHub's ``CODEOWNERS`` (the owners of every file, ``*``)."""

from __future__ import annotations

from pathlib import Path
from typing import TypedDict

import yaml

from cortex.files import regular_file

CODEOWNERS_PLACES = (".github/CODEOWNERS", "CODEOWNERS", "docs/CODEOWNERS")
"""Where GitHub looks for CODEOWNERS, in its order."""


class Ownership(TypedDict):
    """A repository's owner (None when nothing says), every code owner, its system and lifecycle, and the files
    that said so."""

    owner: str | None
    owners: list[str]
    system: str | None
    lifecycle: str | None
    sources: list[str]


def _entity_ref(value: object) -> str | None:
    """``group:platform-team`` or ``platform-team`` -> ``platform-team`` (Backstage entity references)."""
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip().split(":", 1)[-1].split("/", 1)[-1]


def catalog_info(root: Path) -> dict[str, str | None] | None:
    """owner, system and lifecycle from ``catalog-info.yaml`` (its first entity with a ``spec``)."""
    path = root / "catalog-info.yaml"
    if not regular_file(path):
        return None
    try:
        docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    except (yaml.YAMLError, UnicodeDecodeError):
        return None
    for doc in docs:
        spec = doc.get("spec") if isinstance(doc, dict) else None
        if isinstance(spec, dict):
            lifecycle = spec.get("lifecycle")
            return {
                "owner": _entity_ref(spec.get("owner")),
                "system": _entity_ref(spec.get("system")),
                "lifecycle": str(lifecycle) if lifecycle else None,
            }
    return None


def code_owners(root: Path) -> tuple[list[str], str | None]:
    """The owners of every file (the last ``*`` rule, as GitHub reads it) and the CODEOWNERS file they came from."""
    for place in CODEOWNERS_PLACES:
        path = root / place
        if not regular_file(path):
            continue
        owners: list[str] = []
        for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = raw.split("#", 1)[0].split()
            if len(parts) >= 2 and parts[0] in ("*", "/*", "/"):
                owners = [p.lstrip("@") for p in parts[1:]]
        return owners, place
    return [], None


def ownership(root: Path) -> Ownership:
    """Backstage's owner wins; else the first code owner of every file; else nobody says (None)."""
    info = catalog_info(root)
    owners, place = code_owners(root)
    sources = (["catalog-info.yaml"] if info else []) + ([place] if place else [])
    owner = (info or {}).get("owner") or (owners[0].split("/", 1)[-1] if owners else None)
    return Ownership(
        owner=owner,
        owners=owners,
        system=(info or {}).get("system"),
        lifecycle=(info or {}).get("lifecycle"),
        sources=sources,
    )
