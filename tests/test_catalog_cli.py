"""``cortex catalog`` commands against the persistent embedded Redis under the state directory."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from .conftest import FLEET
from .test_inputs import cortex

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_discover_is_incremental_across_processes_and_queries_answer(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet"
    shutil.copytree(FLEET, fleet)
    state = ["--state-dir", str(tmp_path / "state")]
    first = cortex("catalog", "discover", str(fleet), "--json", *state, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["created"] == 39
    second = cortex("catalog", "discover", str(fleet), "--json", *state, cwd=tmp_path)
    assert json.loads(second.stdout)["writes"] == 0  # a new process, the same persisted catalog
    got = json.loads(cortex("catalog", "get", "repo:payments-api", "--json", *state, cwd=tmp_path).stdout)
    assert got["type"] == "repository" and got["health"]["signals"]["tests_present"] is True
    lineage = json.loads(cortex("catalog", "lineage", "repo:web-frontend", "--json", *state, cwd=tmp_path).stdout)
    assert "pkg:npm:lodash" in lineage["nodes"]
    stats = json.loads(cortex("catalog", "stats", "--json", *state, cwd=tmp_path).stdout)
    assert stats["by_type"]["repository"] == 6
    found = json.loads(cortex("catalog", "search", "lodash", "--json", *state, cwd=tmp_path).stdout)
    assert [a["id"] for a in found] == ["pkg:npm:lodash"]


def test_catalog_cli_bad_input(tmp_path: Path) -> None:
    state = ["--state-dir", str(tmp_path / "state")]
    missing = cortex("catalog", "get", "repo:nope", *state, cwd=tmp_path)
    assert missing.returncode == 5 and "no asset 'repo:nope'" in missing.stderr
    every = cortex("catalog", "discover", str(FLEET), "--every", "soon", *state, cwd=tmp_path)
    assert every.returncode == 2 and "--every: 'soon' is not a period" in every.stderr
    scope = cortex("catalog", "token", "ci", "--scope", "admin", cwd=tmp_path)
    assert scope.returncode == 2 and "--scope: 'admin' is not a scope" in scope.stderr
    made = cortex("catalog", "token", "ci", "--scope", "write", cwd=tmp_path)
    assert made.returncode == 0 and '"sha256"' in made.stdout


def test_discover_every_repeats_on_schedule(tmp_path: Path) -> None:
    state = ["--state-dir", str(tmp_path / "state")]
    proc = cortex("catalog", "discover", str(FLEET), "--every", "1s", "--passes", "2", "--json", *state, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    decoder, text, passes = json.JSONDecoder(), proc.stdout.strip(), []
    while text:
        obj, end = decoder.raw_decode(text)
        passes.append(obj)
        text = text[end:].strip()
    assert [p["writes"] > 0 for p in passes] == [True, False]  # the second pass found nothing changed
