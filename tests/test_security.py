"""Dependency audit: OSV range semantics per ecosystem, database loading, alias merging, and the exact findings
for the demo fleet against the bundled advisories."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from cortex.toolset.osvdb import BUNDLED, affected_by, load_osv, severity
from cortex.toolset.security import audit

from .conftest import FLEET


def record(ecosystem: str, events: list[dict[str, str]], kind: str = "ECOSYSTEM", **extra: object) -> dict:  # type: ignore[type-arg]
    return {
        "id": "X-1",
        "affected": [{"package": {"name": "p", "ecosystem": ecosystem}, "ranges": [{"type": kind, "events": events}]}],
        **extra,
    }


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("1.9", None),
        ("2.0", "2.5"),
        ("2.4.9", "2.5"),
        ("2.5", None),
        ("2.10", None),  # 2.10 > 2.5 (not a string)
        ("3.0rc1", "3.1"),
        ("3.1", None),
    ],
)
def test_pypi_ranges_follow_pep_440(version: str, expected: str | None) -> None:
    rec = record("PyPI", [{"introduced": "2.0"}, {"fixed": "2.5"}, {"introduced": "3.0rc1"}, {"fixed": "3.1"}])
    assert affected_by(rec, "pypi", version) == expected


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("4.17.9", ""),
        ("4.17.15", ""),
        ("4.17.16", None),
        ("4.9.0", ""),
        ("1.0.0", None),
    ],
)
def test_npm_ranges_follow_semver_with_last_affected(version: str, expected: str | None) -> None:
    rec = record("npm", [{"introduced": "4.0.0"}, {"last_affected": "4.17.15"}], kind="SEMVER")
    assert affected_by(rec, "npm", version) == expected  # 4.9.0 < 4.17.15 numerically, not as strings


def test_explicit_versions_and_git_ranges() -> None:
    rec = record("PyPI", [{"introduced": "0"}, {"fixed": "abc123"}], kind="GIT")
    rec["affected"][0]["versions"] = ["1.0"]
    assert affected_by(rec, "pypi", "1.0") == ""  # listed explicitly; the GIT range names commits
    assert affected_by(rec, "pypi", "1.1") is None


def test_severity_from_label_or_cvss_vector() -> None:
    assert severity({"database_specific": {"severity": "MODERATE"}}) == "medium"
    vector = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"  # 9.8
    assert severity({"severity": [{"type": "CVSS_V3", "score": vector}]}) == "critical"
    assert severity({}) == "unknown"


def test_zip_database_and_alias_merging(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "requirements.txt").write_text("pkg==1.0\n")
    a = {**record("PyPI", [{"introduced": "0"}, {"fixed": "1.1"}]), "id": "PYSEC-1", "aliases": ["CVE-1"]}
    b = {**record("PyPI", [{"introduced": "0"}, {"fixed": "1.1"}]), "id": "GHSA-1", "aliases": ["CVE-1"]}
    for r in (a, b):
        r["affected"][0]["package"]["name"] = "pkg"
    db = tmp_path / "PyPI.zip"
    with zipfile.ZipFile(db, "w") as zf:
        zf.writestr("PYSEC-1.json", json.dumps(a))
        zf.writestr("GHSA-1.json", json.dumps(b))
    out = audit(repo, load_osv(db))
    assert len(out["findings"]) == 1
    assert out["findings"][0]["ids"] == ["CVE-1", "GHSA-1", "PYSEC-1"]
    assert out["findings"][0]["fixed"] == "1.1"


def test_fleet_findings_against_the_bundled_advisories() -> None:
    index = load_osv(BUNDLED)
    found = {}
    for repo in ("payments-api", "inventory-service", "auth-lib", "web-frontend", "billing-worker", "edge-proxy"):
        out = audit(FLEET / repo, index)
        found[repo] = {(f["package"], f["version"], f["id"], f["fixed"]) for f in out["findings"]}
    assert found == {
        "payments-api": {
            ("requests", "2.19.0", "PYSEC-2018-28", "2.20.0"),
            ("requests", "2.19.0", "PYSEC-2023-74", "2.31.0"),
            ("pyyaml", "5.3", "PYSEC-2021-142", "5.4"),
        },  # not PYSEC-2020-176: 5.1 up to 5.2b1
        "inventory-service": {
            ("jinja2", "2.10", "PYSEC-2019-217", "2.10.1"),
            ("jinja2", "2.10", "PYSEC-2021-66", "2.11.3"),
        },
        "auth-lib": {("pyjwt", "1.7.1", "PYSEC-2022-202", "2.4.0")},  # cryptography 3.3.1 is past the 3.2.1 fix
        "web-frontend": {  # versions from the lock file; express is only a range (^4.17.1) in package.json
            ("lodash", "4.17.15", "GHSA-p6mc-m468-83gw", "4.17.20"),
            ("lodash", "4.17.15", "GHSA-35jh-r3h4-6jhm", "4.17.21"),
            ("minimist", "1.2.0", "GHSA-xvch-5gv4-984h", "1.2.6"),
            ("express", "4.17.1", "GHSA-rv95-896h-c2vc", "4.19.2"),
        },
        "billing-worker": {  # from requirements.txt: its pyproject.toml does not parse, and is reported so
            ("requests", "2.19.0", "PYSEC-2018-28", "2.20.0"),
            ("requests", "2.19.0", "PYSEC-2023-74", "2.31.0"),
        },
        "edge-proxy": {("golang.org/x/text", "0.3.2", "GO-2020-0015", "0.3.3")},  # go.mod's version, v dropped
    }
    unreadable = audit(FLEET / "billing-worker", index)["unreadable"]
    assert unreadable == [
        {"file": "pyproject.toml", "line": 11, "message": "not valid TOML: Invalid value (at line 11, column 2)"}
    ]
    assert audit(FLEET / "payments-api", index)["unresolved"] == ["flask<3,>=2.0", "pytest>=7"]
    severities = {f["id"]: f["severity"] for f in audit(FLEET / "web-frontend", index)["findings"]}
    assert severities == {  # GitHub's labels; MODERATE is called medium
        "GHSA-xvch-5gv4-984h": "critical",
        "GHSA-35jh-r3h4-6jhm": "high",
        "GHSA-p6mc-m468-83gw": "high",
        "GHSA-rv95-896h-c2vc": "medium",
    }
    described = audit(FLEET / "web-frontend", index)["database"]
    assert described["bundled_subset"] and described["ecosystems"] == {"Go": 1, "PyPI": 8, "npm": 4}


def test_fix_plan_bumps_pypi_and_npm_pins_and_says_why_it_cannot_fix_the_rest() -> None:
    from cortex.toolset.fixplan import plan_fixes

    def finding(eco: str, pkg: str, version: str, fixed: str, vid: str) -> dict[str, str]:
        return {"ecosystem": eco, "package": pkg, "version": version, "source": "x", "fixed": fixed, "id": vid,
                "severity": "high", "summary": "s"}  # fmt: skip

    findings = [
        finding("PyPI", "requests", "2.19.0", "2.20.0", "A"),
        finding("PyPI", "requests", "2.19.0", "2.31.0", "B"),
        finding("npm", "lodash", "4.17.15", "4.17.21", "C"),
        finding("npm", "left-pad", "1.0.0", "", "D"),
        finding("Go", "golang.org/x/text", "0.3.0", "0.3.8", "E"),
        finding("PyPI", "pyjwt", "1.7.1", "2.4.0", "F"),
    ]
    handoffs, unfixable = plan_fixes(findings, allow_major=False)
    assert {(h["params"]["ecosystem"], h["params"]["package"], h["params"]["to"]) for h in handoffs} == {
        ("PyPI", "requests", "2.31.0"),  # the lowest version that fixes both advisories
        ("npm", "lodash", "4.17.21"),
    }
    reasons = {u["package"]: u["reason"] for u in unfixable}
    assert reasons["left-pad"] == "no fixed version is known for D"
    assert reasons["golang.org/x/text"].startswith("Cortex makes fix branches for PyPI and npm pins")
    assert "major version jump" in reasons["pyjwt"] and "allow_major" in reasons["pyjwt"]
    assert len(plan_fixes(findings)[0]) == 3  # majors allowed by default: pyjwt too


def _run(kind: str, repo: str, **params: object) -> dict:  # type: ignore[type-arg]
    import asyncio

    from cortex.coord.keys import RunKeys
    from cortex.models.task import Estimate, Task
    from cortex.toolset.context import TaskContext
    from cortex.toolset.registry import handler_for

    task = Task(
        id="t",
        master="security",
        kind=kind,
        worker_type="scan",
        estimate=Estimate(seconds=1, tokens=0),
        timeout_s=120,
        params=params,
    )
    ctx = TaskContext(
        task=task,
        attempt=1,
        target_path=FLEET / repo,
        run_id="r",
        worker_id="w",
        redis=None,  # type: ignore[arg-type]
        keys=RunKeys("r"),
    )
    handler = handler_for(kind)
    assert handler is not None
    return asyncio.run(handler(ctx))


@pytest.mark.timeout(120)
def test_bandit_finds_the_planted_shell_call_and_nothing_in_tests() -> None:
    out = _run("security.static-analysis", "payments-api")
    assert {(f["id"], f["severity"], f["file"], f["line"]) for f in out["findings"]} == {
        ("B602", "high", "src/payments/receipts.py", 12),
        ("B404", "low", "src/payments/receipts.py", 7),
    }
    assert _run("security.static-analysis", "auth-lib")["findings"] == []


@pytest.mark.timeout(120)
def test_detect_secrets_reports_the_planted_key_without_its_value() -> None:
    out = _run("security.secrets", "payments-api")
    assert [(f["id"], f["file"], f["line"]) for f in out["findings"]] == [
        ("AWS Access Key", "src/payments/settings.py", 7)
    ]
    assert "AKIA" not in json.dumps(out)
    assert _run("security.secrets", "web-frontend")["findings"] == []


@pytest.mark.timeout(60)
def test_a_missing_or_failing_tool_fails_the_task_with_its_own_error(tmp_path: Path) -> None:
    import asyncio
    import sys

    from cortex.errors import TaskFailed
    from cortex.toolset.security import _tool_json

    with pytest.raises(TaskFailed, match="not found"):
        asyncio.run(_tool_json([str(tmp_path / "no-such-tool"), "-m", "x"], tmp_path, 10, {0}))
    with pytest.raises(TaskFailed, match="exited with 3: boom"):
        argv = [sys.executable, "-c", "import sys; sys.stderr.write('boom'); sys.exit(3)"]
        asyncio.run(_tool_json(argv, tmp_path, 10, {0}))
