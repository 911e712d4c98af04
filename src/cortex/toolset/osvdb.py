"""OSV advisories: where the audit reads them, how a version is judged affected, and what the database is.

Three sources, one interface (``records_for`` and ``describe``):

- a directory of OSV JSON or YAML files, or an osv.dev ecosystem zip, loaded whole (``OsvIndex``); the small
  subset bundled for the demo fleet is one of these, and ``describe`` says so;
- a database ``cortex osv import`` built (``OsvStore``): one file per package, read only for the packages a
  repository pins, so a full PyPI or npm download costs nothing per audit;
- either of those plus the records an online lookup fetched (``Layered``).

Versions are ordered per ecosystem: PEP 440 for PyPI, semantic versioning for npm, Go and crates.io.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import semver
import yaml
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from cortex.errors import TaskFailed
from cortex.models.findings import OsvDatabase

BUNDLED = Path(__file__).parent / "osv"
"""The small real subset shipped for the demo fleet (see its README)."""
MANIFEST = "manifest.json"
"""What marks a database ``cortex osv import`` built."""


def package_key(ecosystem: str, name: str) -> tuple[str, str]:
    """How a package is looked up: ecosystem lower-cased, PyPI names normalised (PEP 503), others lower-cased."""
    eco = ecosystem.lower()
    return eco, canonicalize_name(name) if eco == "pypi" else name.lower()


def parse_version(ecosystem: str, version: str) -> Any:
    """A comparable version: PEP 440 for PyPI, semantic versioning (a leading ``v`` dropped) otherwise."""
    if ecosystem.lower() == "pypi":
        return Version(version)
    return semver.Version.parse(version.lstrip("v"))


class OsvSource(Protocol):
    """Where the audit gets the advisories of one package."""

    def records_for(self, ecosystem: str, name: str) -> list[dict[str, Any]]:
        """The records affecting ``name`` in ``ecosystem`` (each with only that package's ``affected`` entry)."""

    def describe(self) -> OsvDatabase:
        """What the database is: source, records, ecosystems, how current."""


def per_package(record: dict[str, Any]) -> Iterator[tuple[tuple[str, str], dict[str, Any]]]:
    """A record once for each package it affects, with only that package's ``affected`` entry."""
    for affected in record.get("affected", []):
        pkg = affected.get("package", {})
        if pkg.get("ecosystem") and pkg.get("name"):
            yield package_key(pkg["ecosystem"], pkg["name"]), {**record, "affected": [affected]}


def read_records(source: Path) -> Iterator[dict[str, Any]]:
    """Every OSV record in a directory (JSON or YAML files) or an osv.dev zip."""
    if source.is_file() and source.suffix == ".zip":
        with zipfile.ZipFile(source) as zf:
            for name in zf.namelist():
                if name.endswith(".json"):
                    yield json.loads(zf.read(name))
        return
    for path in sorted(source.rglob("*")):
        if path.suffix == ".json" and path.name != MANIFEST:
            yield json.loads(path.read_text(encoding="utf-8"))
        elif path.suffix in (".yaml", ".yml"):
            yield yaml.safe_load(path.read_text(encoding="utf-8"))


def _ecosystem(record: dict[str, Any]) -> str:
    affected = record.get("affected") or [{}]
    return str(affected[0].get("package", {}).get("ecosystem", "unknown"))


@dataclass
class OsvIndex:
    """Advisories held in memory, by (ecosystem, package)."""

    source: str
    by_package: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    bundled: bool = False

    def add(self, record: dict[str, Any]) -> None:
        """Index one OSV record under each package it affects."""
        for key, entry in per_package(record):
            self.by_package.setdefault(key, []).append(entry)

    def records_for(self, ecosystem: str, name: str) -> list[dict[str, Any]]:
        """The records affecting ``name``."""
        return self.by_package.get(package_key(ecosystem, name), [])

    def describe(self) -> OsvDatabase:
        """Counted from what was loaded."""
        ids: dict[str, str] = {}
        newest = ""
        for records in self.by_package.values():
            for r in records:
                ids[r["id"]] = _ecosystem(r)
                newest = max(newest, str(r.get("modified", "")))
        ecosystems: dict[str, int] = {}
        for eco in ids.values():
            ecosystems[eco] = ecosystems.get(eco, 0) + 1
        return OsvDatabase(
            source=self.source,
            records=len(ids),
            ecosystems=dict(sorted(ecosystems.items())),
            newest_modified=newest or None,
            bundled_subset=self.bundled,
        )


class OsvStore:
    """A database ``cortex osv import`` built: per-package files, read on demand and kept."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
        self._cache: dict[tuple[str, str], list[dict[str, Any]]] = {}

    def records_for(self, ecosystem: str, name: str) -> list[dict[str, Any]]:
        """The records of one package, from its file."""
        key = package_key(ecosystem, name)
        if key not in self._cache:
            path = package_file(self.root, *key)
            self._cache[key] = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
        return self._cache[key]

    def describe(self) -> OsvDatabase:
        """From the manifest the import keeps."""
        ecos = self.manifest.get("ecosystems", {})
        newest = max((str(e.get("newest_modified") or "") for e in ecos.values()), default="")
        return OsvDatabase(
            source=str(self.root),
            records=sum(int(e.get("records", 0)) for e in ecos.values()),
            ecosystems={k: int(v.get("records", 0)) for k, v in sorted(ecos.items())},
            newest_modified=newest or None,
        )


@dataclass
class Layered:
    """A database plus the records an online lookup fetched for the packages asked about."""

    base: OsvSource
    extra: OsvIndex
    api: str

    def records_for(self, ecosystem: str, name: str) -> list[dict[str, Any]]:
        """Both sources' records."""
        return [*self.base.records_for(ecosystem, name), *self.extra.records_for(ecosystem, name)]

    def describe(self) -> OsvDatabase:
        """The base, with the API named."""
        return self.base.describe().model_copy(update={"online": self.api})


def package_file(root: Path, ecosystem: str, name: str) -> Path:
    """Where an imported database keeps one package's records (names made safe for a path)."""
    safe = name.replace("/", "%2F").replace("\\", "%5C")
    if safe in ("", ".", ".."):
        safe = f"%{safe}"
    return root / "packages" / ecosystem.replace("/", "_").replace(":", "_") / f"{safe}.json"


@cache
def load_osv(source: Path) -> OsvSource:
    """The advisories at ``source`` (cached per process: workers audit many targets against one database)."""
    if not source.exists():
        raise TaskFailed(f"OSV database {source} does not exist (set CORTEX_OSV_PATH)", retryable=False)
    if (source / MANIFEST).is_file():
        return OsvStore(source)
    index = OsvIndex(str(source), bundled=source.resolve() == BUNDLED.resolve())
    for record in read_records(source):
        index.add(record)
    return index


def affected_by(record: dict[str, Any], ecosystem: str, version: str) -> str | None:
    """If ``version`` is affected by the record, the first fixed version after it ('' when none); else None."""
    aff = record["affected"][0]
    if version in aff.get("versions", []):
        fixes = [
            e["fixed"]
            for r in aff.get("ranges", [])
            if r.get("type") in ("ECOSYSTEM", "SEMVER")
            for e in r.get("events", [])
            if "fixed" in e
        ]
        return _first_fix(ecosystem, version, fixes)
    try:
        v = parse_version(ecosystem, version)
    except (InvalidVersion, ValueError):
        return None
    for rng in aff.get("ranges", []):
        if rng.get("type") not in ("ECOSYSTEM", "SEMVER"):
            continue  # GIT ranges name commits, not releases
        inside, fix = False, None
        for event in rng.get("events", []):
            if "introduced" in event:
                start = event["introduced"]
                inside = start == "0" or parse_version(ecosystem, start) <= v
            elif "fixed" in event and inside and v >= parse_version(ecosystem, event["fixed"]):
                inside = False
            elif "fixed" in event and inside:
                fix = event["fixed"]
                break
            elif "last_affected" in event and inside and v > parse_version(ecosystem, event["last_affected"]):
                inside = False
        if inside:
            return fix or ""
    return None


def _first_fix(ecosystem: str, version: str, fixes: list[str]) -> str:
    try:
        v = parse_version(ecosystem, version)
        later = sorted((f for f in fixes if parse_version(ecosystem, f) > v), key=lambda f: parse_version(ecosystem, f))
    except (InvalidVersion, ValueError):
        return ""  # a version the ecosystem's scheme cannot order: affected, fix unknown
    return later[0] if later else ""


def severity(record: dict[str, Any]) -> str:
    """The advisory's own severity: GitHub's label, else a CVSS vector's base score, else 'unknown'."""
    label = str(record.get("database_specific", {}).get("severity", "")).lower()
    if label:
        return {"moderate": "medium"}.get(label, label)
    for item in record.get("severity", []):
        if str(item.get("type", "")).startswith("CVSS_V3"):
            from cvss import CVSS3

            score = CVSS3(item["score"]).scores()[0]
            return "critical" if score >= 9 else "high" if score >= 7 else "medium" if score >= 4 else "low"
    return "unknown"
