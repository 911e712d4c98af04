"""``cortex osv import``: osv.dev's per-ecosystem zips into a local database an audit reads per package; imported
again, only what changed is written; the report names the database."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from cortex.toolset.osvdb import BUNDLED, OsvStore, load_osv, read_records
from cortex.toolset.osvimport import import_osv
from cortex.toolset.security import audit

from .conftest import FLEET
from .test_inputs import cortex


def ecosystem_zip(path: Path, records: list[dict]) -> Path:  # type: ignore[type-arg]
    """A zip shaped like osv.dev's <Ecosystem>/all.zip: one JSON file per record."""
    with zipfile.ZipFile(path, "w") as zf:
        for r in records:
            zf.writestr(f"{r['id']}.json", json.dumps(r))
    return path


def bundled(ecosystem: str) -> list[dict]:  # type: ignore[type-arg]
    return [r for r in read_records(BUNDLED / ecosystem)]


def test_import_then_audit_then_update_incrementally(tmp_path: Path) -> None:
    pypi = ecosystem_zip(tmp_path / "PyPI.zip", bundled("PyPI"))
    npm = ecosystem_zip(tmp_path / "npm.zip", bundled("npm"))
    db = tmp_path / "osv"
    first = import_osv([pypi, npm], db)
    assert (first.read, first.added, first.ecosystems) == (12, 12, {"PyPI": 8, "npm": 4})
    store = load_osv(db)
    assert isinstance(store, OsvStore)
    described = store.describe()
    assert (described.records, described.ecosystems, described.bundled_subset) == (12, {"PyPI": 8, "npm": 4}, False)
    # the audit over the imported database finds what it finds over the bundled one
    for repo in ("payments-api", "web-frontend"):
        ids = {f["id"] for f in audit(FLEET / repo, store)["findings"]}
        assert ids == {f["id"] for f in audit(FLEET / repo, load_osv(BUNDLED))["findings"]}
        assert ids
    # again: nothing changed, nothing written; a newer record replaces the old, a withdrawn one goes
    again = import_osv([pypi], db)
    assert (again.unchanged, again.files_written) == (8, 0)
    records = bundled("PyPI")
    requests = next(r for r in records if r["id"] == "PYSEC-2023-74")
    newer = {**requests, "modified": "2099-01-01T00:00:00Z", "summary": "updated text"}
    withdrawn = {**next(r for r in records if r["id"] == "PYSEC-2019-217"), "withdrawn": "2099-01-02T00:00:00Z"}
    update = import_osv([ecosystem_zip(tmp_path / "update.zip", [newer, withdrawn])], db)
    assert (update.updated, update.withdrawn, update.files_written) == (1, 1, 2)
    fresh = OsvStore(db)
    assert next(r for r in fresh.records_for("PyPI", "requests") if r["id"] == "PYSEC-2023-74")["summary"] == (
        "updated text"
    )
    assert "PYSEC-2019-217" not in {r["id"] for r in fresh.records_for("PyPI", "Jinja2")}
    assert fresh.describe().newest_modified == "2099-01-01T00:00:00Z" and fresh.describe().records == 11


def test_the_cli_imports_and_tells_what_a_database_holds(tmp_path: Path) -> None:
    pypi = ecosystem_zip(tmp_path / "PyPI.zip", bundled("PyPI"))
    done = cortex("osv", "import", str(pypi), "--into", str(tmp_path / "db"), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ecosystems"] == {"PyPI": 8}
    info = cortex("osv", "info", str(tmp_path / "db"), "--json", cwd=tmp_path)
    assert json.loads(info.stdout)["records"] == 8
    bundled_info = cortex("osv", "info", cwd=tmp_path, env={"CORTEX_STATE_DIR": str(tmp_path / "none")})
    assert "bundled for the demo fleet" in bundled_info.stdout
    missing = cortex("osv", "import", str(tmp_path / "nope.zip"), cwd=tmp_path)
    assert missing.returncode == 2 and "nope.zip: not found" in missing.stderr
