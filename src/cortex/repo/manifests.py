"""What a repository declares it depends on, from every manifest it has: ``pyproject.toml`` and
``requirements*.txt`` (PyPI), ``package.json`` with ``package-lock.json`` (npm), ``go.mod`` (Go) and
``Cargo.lock`` (crates.io).

A manifest that does not parse is not the end of the repository: it becomes a ``ManifestProblem`` (the file, the
line when the parser says it, the parser's message) and every other manifest is still read.
"""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NotRequired, TypedDict

from packaging.requirements import InvalidRequirement, Requirement

from cortex.errors import ManifestUnreadable
from cortex.files import regular_file


class Package(TypedDict):
    """A declared dependency: ecosystem (``PyPI``, ``npm``, ``Go``, ``crates.io``), name, version specifier, the
    file declaring it, and the exact version in use when the manifest or a lock file pins one."""

    ecosystem: str
    name: str
    spec: str
    source: str
    locked: NotRequired[str]


class ManifestProblem(TypedDict):
    """A manifest that could not be read: which file (relative to the repository), where, and why."""

    file: str
    line: int | None
    message: str


@dataclass
class Declared:
    """The packages of every manifest that parsed, and a problem for each one that did not."""

    packages: list[Package] = field(default_factory=list)
    problems: list[ManifestProblem] = field(default_factory=list)


_TOML_AT = re.compile(r"\(at line (\d+), column \d+\)")


def _toml(text: str) -> dict[str, object]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        at = _TOML_AT.search(str(exc))
        raise ManifestUnreadable(f"not valid TOML: {exc}", int(at.group(1)) if at else None) from exc


def _json(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestUnreadable(f"not valid JSON: {exc.msg} (column {exc.colno})", exc.lineno) from exc


def _pep508(spec: str, source: str, line: int | None = None) -> Package:
    try:
        req = Requirement(spec)
    except InvalidRequirement as exc:
        raise ManifestUnreadable(f"not a requirement: {spec!r} ({exc})", line) from exc
    return {"ecosystem": "PyPI", "name": req.name.lower(), "spec": str(req.specifier), "source": source}


Read = tuple[list[Package], list[ManifestProblem]]


def _each(path: Path, specs: list[tuple[str, int | None]]) -> Read:
    """PEP 508 requirements: the ones that parse, and a problem for each one that does not."""
    packages, problems = [], []
    for spec, line in specs:
        try:
            packages.append(_pep508(spec, path.name, line))
        except ManifestUnreadable as exc:
            problems.append(ManifestProblem(file=path.name, line=exc.line, message=str(exc)))
    return packages, problems


def _pyproject(root: Path, path: Path, text: str) -> Read:
    data = _toml(text)
    project = data.get("project", {})
    if not isinstance(project, dict):
        raise ManifestUnreadable("[project] is not a table")
    specs = list(project.get("dependencies", []))
    for extra in (project.get("optional-dependencies") or {}).values():
        specs += extra
    return _each(path, [(str(s), None) for s in specs])


def _requirements(root: Path, path: Path, text: str) -> Read:
    specs: list[tuple[str, int | None]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if line and not line.startswith("-"):  # options (-r, -e, --index-url) name no package by themselves
            specs.append((line, number))
    return _each(path, specs)


def _package_json(root: Path, path: Path, text: str) -> Read:
    data = _json(text)
    if not isinstance(data, dict):
        raise ManifestUnreadable("package.json is not an object")
    locked: dict[str, str] = {}
    lock = root / "package-lock.json"
    if lock.is_file():
        lock_data = _json(lock.read_text(encoding="utf-8"))
        entries = lock_data.get("packages", {}) if isinstance(lock_data, dict) else {}
        for key, meta in entries.items() if isinstance(entries, dict) else []:
            if key.startswith("node_modules/") and isinstance(meta, dict) and "version" in meta:
                locked[key.removeprefix("node_modules/")] = str(meta["version"])
    out: list[Package] = []
    for section in ("dependencies", "devDependencies"):
        for name, spec in sorted((data.get(section) or {}).items()):
            item: Package = {"ecosystem": "npm", "name": name, "spec": str(spec), "source": "package.json"}
            if name in locked:
                item["locked"] = locked[name]
            out.append(item)
    return out, []


_GO_REQUIRE = re.compile(r"^\s*(?:require\s+)?([A-Za-z0-9._~/-]+\.[A-Za-z0-9._~/-]+)\s+(v[0-9][^\s/]*)")


def _go_mod(root: Path, path: Path, text: str) -> Read:
    out: list[Package] = []
    in_block = False
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("//", 1)[0].strip()
        if line.startswith("require ("):
            in_block = True
            continue
        if in_block and line == ")":
            in_block = False
            continue
        if in_block or line.startswith("require "):
            m = _GO_REQUIRE.match(line)
            if m is None:
                raise ManifestUnreadable(f"not a requirement: {raw.strip()!r}", number)
            version = m.group(2)
            out.append(
                {"ecosystem": "Go", "name": m.group(1), "spec": version, "source": "go.mod", "locked": version[1:]}
            )
    return out, []


def _cargo_lock(root: Path, path: Path, text: str) -> Read:
    data = _toml(text)
    packages = data.get("package", [])
    if not isinstance(packages, list):
        raise ManifestUnreadable("[[package]] is not an array of tables")
    out: list[Package] = []
    for p in packages:
        if isinstance(p, dict) and "name" in p and "version" in p and "source" in p:  # path crates have no source
            version = str(p["version"])
            out.append(
                {
                    "ecosystem": "crates.io",
                    "name": str(p["name"]),
                    "spec": version,
                    "source": "Cargo.lock",
                    "locked": version,
                }  # fmt: skip
            )
    return out, []


Reader = Callable[[Path, Path, str], Read]
"""Reads one manifest: the repository's root, the manifest's path and its text."""


_AFTER_REQUIREMENTS: tuple[tuple[str, Reader], ...] = (
    ("package.json", _package_json),
    ("go.mod", _go_mod),
    ("Cargo.lock", _cargo_lock),
)
_REQUIREMENTS = "requirements*.txt"


def is_manifest(name: str) -> bool:
    """Whether a top-level file of this name is a manifest ``manifest_readers`` reads."""
    return name == "pyproject.toml" or fnmatch.fnmatchcase(name, _REQUIREMENTS) or name in dict(_AFTER_REQUIREMENTS)


def manifest_readers(root: Path, top_files: set[str] | None = None) -> list[tuple[Path, Reader]]:
    """The manifests of ``root`` Cortex reads, each with its reader, in a fixed order. ``top_files``: the regular
    files at its top level, when the caller has listed them (no file is looked at again to decide)."""
    names = top_files if top_files is not None else {p.name for p in root.iterdir() if regular_file(p)}
    found: list[tuple[Path, Reader]] = []
    if "pyproject.toml" in names:
        found.append((root / "pyproject.toml", _pyproject))
    found += [(root / n, _requirements) for n in sorted(names) if fnmatch.fnmatchcase(n, _REQUIREMENTS)]
    for name, reader in _AFTER_REQUIREMENTS:
        if name in names:
            found.append((root / name, reader))
    return found


def declared_packages(
    root: Path, top_files: set[str] | None = None, texts: Mapping[str, bytes] | None = None
) -> Declared:
    """Every package the repository declares; an unreadable manifest is a problem, and the others still count.
    ``top_files``: as ``manifest_readers`` takes it. ``texts``: top-level files the caller has read already, by
    name (a survey reads every file; reading the manifests again was a tenth of planning 10,000 repositories)."""
    out = Declared()
    for path, read in manifest_readers(root, top_files):
        try:
            given = texts.get(path.name) if texts is not None else None
            text = given.decode("utf-8") if given is not None else path.read_text(encoding="utf-8")
            packages, problems = read(root, path, text)
            out.packages += packages
            out.problems += problems
        except ManifestUnreadable as exc:
            out.problems.append({"file": str(path.relative_to(root)), "line": exc.line, "message": str(exc)})
        except (OSError, UnicodeDecodeError) as exc:
            out.problems.append({"file": str(path.relative_to(root)), "line": None, "message": f"unreadable: {exc}"})
    return out
