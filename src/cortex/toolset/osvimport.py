"""``cortex osv import``: a local vulnerability database from osv.dev's per-ecosystem downloads.

osv.dev publishes one zip per ecosystem (``https://osv-vulnerabilities.storage.googleapis.com/<Ecosystem>/all.zip``:
PyPI, npm, Go, crates.io, Maven and the rest). Importing one writes each package's records to a file of its own
(``packages/<ecosystem>/<name>.json``), so an audit reads only what a repository pins, and keeps a manifest of what
the database holds (records per ecosystem, the newest ``modified`` date). Importing again is incremental: a
record whose ``modified`` date is not newer than the one held is skipped, a changed one replaces it, a withdrawn
one is removed. Files are written atomically; the manifest last.
"""

from __future__ import annotations

import time
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cortex.errors import InputError
from cortex.files import read_json, write_json
from cortex.toolset.osvdb import MANIFEST, package_file, per_package, read_records

SEEN = "seen.json"
"""Record id -> [modified, [package files it is in], [ecosystems]]: what the next import compares against."""


@dataclass
class ImportResult:
    """What one import did."""

    read: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    withdrawn: int = 0
    files_written: int = 0
    ecosystems: dict[str, int] = field(default_factory=dict)


Changes = dict[Path, dict[str, list[dict[str, Any]]]]
"""Package file -> record id -> its new entries (empty: remove the record from that file)."""


def _take(
    record: dict[str, Any], into: Path, seen: dict[str, list[Any]], changes: Changes, result: ImportResult
) -> None:
    """Fold one record into the pending changes, unless the database already holds it as it is."""
    rid, modified = str(record["id"]), str(record.get("modified", ""))
    before = seen.get(rid)
    withdrawn = bool(record.get("withdrawn"))
    if before is not None and before[0] >= modified and not withdrawn:
        result.unchanged += 1
        return
    new_files: dict[Path, list[dict[str, Any]]] = {}  # a package can be affected twice (two ranges)
    for (eco, name), entry in [] if withdrawn else per_package(record):
        new_files.setdefault(package_file(into, eco, name).relative_to(into), []).append(entry)
    for rel in {Path(f) for f in (before[1] if before else [])} - set(new_files):
        changes.setdefault(rel, {})[rid] = []
    for rel, entries in new_files.items():
        changes.setdefault(rel, {})[rid] = entries
    if withdrawn:
        result.withdrawn += before is not None
        seen.pop(rid, None)
        return
    result.updated += before is not None
    result.added += before is None
    ecos = sorted({str(a.get("package", {}).get("ecosystem")) for a in record.get("affected", [])})
    seen[rid] = [modified, sorted(str(f) for f in new_files), ecos]


def import_osv(sources: Iterable[Path], into: Path) -> ImportResult:
    """Import every record of ``sources`` (zips or directories) into the database at ``into``. Every source is
    read before anything is written: one that cannot be read (``InputError`` naming it) changes nothing."""
    seen: dict[str, list[Any]] = read_json(into / SEEN) or {}
    result = ImportResult()
    changes: Changes = {}
    for source in sources:
        try:
            for record in read_records(source):
                if not isinstance(record, dict) or not isinstance(record.get("id"), str):
                    raise ValueError("a record that is not an OSV object with an id")
                result.read += 1
                _take(record, into, seen, changes, result)
        except (
            zipfile.BadZipFile,
            ValueError,
            UnicodeDecodeError,
            yaml.YAMLError,
            OSError,
            KeyError,
            TypeError,
        ) as exc:
            raise InputError(str(source), f"not a readable OSV source: {type(exc).__name__}: {exc}") from None
    into.mkdir(parents=True, exist_ok=True)
    for rel, by_id in sorted(changes.items()):
        path = into / rel
        held: dict[str, list[dict[str, Any]]] = {}
        for entry in read_json(path) or []:
            held.setdefault(entry["id"], []).append(entry)
        for rid, entries in by_id.items():
            held.pop(rid, None)
            if entries:
                held[rid] = entries
        write_json(path, [e for k in sorted(held) for e in held[k]])
        result.files_written += 1
    write_json(into / SEEN, seen)
    result.ecosystems = _write_manifest(into, seen)
    return result


def _write_manifest(into: Path, seen: dict[str, list[Any]]) -> dict[str, int]:
    """Records and newest ``modified`` per ecosystem, from what is held."""
    ecosystems: dict[str, dict[str, Any]] = {}
    for modified, _files, ecos in seen.values():
        for eco in ecos:
            entry = ecosystems.setdefault(eco, {"records": 0, "newest_modified": ""})
            entry["records"] += 1
            entry["newest_modified"] = max(entry["newest_modified"], modified)
    write_json(into / MANIFEST, {"format": 1, "imported_at": time.time(), "ecosystems": ecosystems})
    return {k: v["records"] for k, v in sorted(ecosystems.items())}
