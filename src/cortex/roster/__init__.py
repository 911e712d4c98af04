"""The default roster and cluster (YAML data shipped with the package) and the loaders for user files."""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from cortex.errors import InputError
from cortex.models import Cluster, Roster
from cortex.roster.documents import parse_yaml, read_text

M = TypeVar("M", bound=BaseModel)

DEFAULT_FILES = ("roster.yaml", "cluster.yaml")


def _default_path(name: str) -> Path:
    return Path(str(resources.files("cortex.roster").joinpath(name)))


def format_location(loc: tuple[int | str, ...], data: Any) -> str:
    """A pydantic error location as a readable path, using names instead of list indexes where items have one."""
    parts: list[str] = []
    node = data
    for item in loc:
        if isinstance(item, int) and isinstance(node, list) and 0 <= item < len(node):
            node = node[item]
            name = node.get("name") if isinstance(node, dict) else None
            parts.append(f"[{item}]" if name is None else f"[{item}:{name}]")
        else:
            node = node.get(item) if isinstance(node, dict) else None
            parts.append(f".{item}" if parts else str(item))
    return "".join(parts) or "(top level)"


def validation_error(source: str, exc: ValidationError, data: Any) -> InputError:
    """The first problem of a ValidationError as an InputError naming the file and field."""
    first = exc.errors()[0]
    more = len(exc.errors()) - 1
    hint = f"{more} more problem(s) after this one" if more else None
    return InputError(source, first["msg"], field=format_location(tuple(first["loc"]), data), hint=hint)


def load_model(model: type[M], path: Path) -> M:
    """Read a YAML or JSON file into ``model``, turning every failure into an InputError about that file."""
    data = parse_yaml(read_text(path, "file"), str(path))
    if not isinstance(data, dict):
        raise InputError(str(path), "expected a mapping at the top level", hint=f"see the default {path.name}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(str(path), exc, data) from exc


def load_roster(path: Path | None = None) -> Roster:
    """The roster at ``path``, or the default one."""
    return load_model(Roster, path or _default_path("roster.yaml"))


def load_cluster(path: Path | None = None) -> Cluster:
    """The cluster at ``path``, or the default one."""
    return load_model(Cluster, path or _default_path("cluster.yaml"))


def write_defaults(directory: Path, *, force: bool = False) -> list[Path]:
    """Copy the default roster and cluster into ``directory`` for editing. Refuses to overwrite unless forced."""
    if directory.exists() and not directory.is_dir():
        raise InputError(str(directory), "is a file, not a directory", hint="name a directory to write them into")
    directory.mkdir(parents=True, exist_ok=True)
    targets = [directory / name for name in DEFAULT_FILES]
    existing = [p for p in targets if p.exists()]
    if existing and not force:
        raise InputError(str(existing[0]), "already exists", hint="pass --force to overwrite")
    for name, target in zip(DEFAULT_FILES, targets, strict=True):
        shutil.copyfile(_default_path(name), target)
    return targets
