"""One table of exit codes, each meaning one thing, printed the same in the README and ``--help``; errors printed
literally. (Codes 2, 3, 5, 130, 4 and 1 are checked where their failures are made: test_inputs, test_cli,
test_chaos_cli, test_interrupt, test_chaos, test_run.)"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from cortex.cli.common import exit_for
from cortex.errors import EXIT_CODES, ExitCode, InputError

from .conftest import FLEET, ROOT
from .test_inputs import cortex


def test_each_code_means_one_thing_and_readme_and_help_say_the_same() -> None:
    assert len({int(c) for c in EXIT_CODES}) == len(EXIT_CODES) == len(ExitCode)
    readme = ROOT.joinpath("README.md").read_text()
    rows = dict(re.findall(r"^\| (\d+) \| (.+) \|$", readme, re.MULTILINE))
    assert {int(c) for c in rows} == {int(c) for c in ExitCode}
    shown = cortex("--help", cwd=ROOT).stdout
    for code, text in EXIT_CODES.items():
        assert re.search(rf"^\s*{int(code)}  {re.escape(text)}$", shown, re.MULTILINE), (code, shown)


def test_messages_are_printed_literally(tmp_path: Path) -> None:
    proc = cortex("report", "[a-z0-9]", "--state-dir", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2 and "'[a-z0-9]' is not a run id" in proc.stderr


def test_an_unexpected_exception_is_an_internal_error_with_its_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    try:
        raise KeyError("surprise")
    except KeyError as exc:
        code = exit_for(exc)
    err = capsys.readouterr().err
    assert code == 70 and "Traceback" in err and "KeyError: 'surprise'" in err and "this is a bug" in err
    assert exit_for(InputError("x.yaml", "bad")) == 2


@pytest.mark.integration
def test_a_failed_preflight_exits_6_and_starts_nothing(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet"
    shutil.copytree(FLEET, fleet)
    out = tmp_path / "plan"
    assert cortex("plan", "run the tests", "--targets", str(fleet), "--out", str(out), cwd=tmp_path).returncode == 0
    shutil.rmtree(fleet / "auth-lib")  # a target vanished between planning and running
    state = tmp_path / "state"
    proc = cortex("run", str(out / "plan.json"), "--state-dir", str(state), cwd=tmp_path, env={"CORTEX_REDIS_URL": ""})
    assert proc.returncode == 6, proc.stderr
    assert "FAIL targets: missing: auth-lib" in proc.stderr and "pre-flight failed, nothing started" in proc.stderr
    assert not (state / "archives").exists()
    current = json.loads((state / "current-execution.json").read_text())
    assert current["status"] == "aborted" and current["phase"] == 0
