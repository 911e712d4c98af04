"""Bad input, everywhere, gets exit 2 or 3 and one clear line: hypothesis feeds the CLI malformed files and
malformed values of its settings, and no traceback may reach the user.

The CLI runs in this process (``cortex.cli.main``, its one error path) so hundreds of examples take seconds; the
settings are read from the environment at each call, as in a fresh process.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cortex.cli import main

from .conftest import FLEET

pytestmark = pytest.mark.timeout(600)

BAD_EXITS = {2, 3}


def invoke(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run ``cortex ARGS`` in-process: its exit code and standard error."""
    saved_argv, saved_env = sys.argv, dict(os.environ)
    os.environ.update({"CORTEX_REDIS_CONNECT_ATTEMPTS": "1", **(env or {})})
    sys.argv = ["cortex", *args]
    err = io.StringIO()
    code = 0
    try:
        with redirect_stderr(err), redirect_stdout(io.StringIO()):
            main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(saved_env)
    return code, err.getvalue()


def assert_one_clear_line(code: int, stderr: str) -> None:
    assert "Traceback" not in stderr, stderr
    assert code in BAD_EXITS, (code, stderr)
    errors = [line for line in stderr.splitlines() if line.startswith(("error:", "Error:"))]
    assert len(errors) == 1, stderr


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
file_contents = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(str.encode),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.sampled_from(["[", "{", "a:\n  - "]).flatmap(lambda s: st.integers(1, 100_000).map(lambda n: (s * n).encode())),
    st.just(b""),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(content=file_contents, command=st.sampled_from(["plan", "roster", "cluster", "prices", "osv"]))
def test_malformed_files_get_one_line_and_a_bad_input_code(content: bytes, command: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "input.json"
        path.write_bytes(content)
        out = str(Path(tmp) / "out")
        env = {"CORTEX_STATE_DIR": str(Path(tmp) / "state")}
        if command == "plan":
            args = ["run", str(path)]
        elif command == "osv":  # a zip that is not one, or one whose member is not an OSV record
            path = _as_zip(path, content) if content[:1] == b"{" else path.rename(path.with_suffix(".zip"))
            args = ["osv", "import", str(path), "--into", str(Path(tmp) / "state" / "osv")]
        elif command == "prices":  # read before anything starts; the plan is refused too if prices are fine
            env["CORTEX_PRICES"] = str(path)
            args = ["run", str(path)]
        else:
            args = ["plan", "audit security", "--targets", str(FLEET), f"--{command}", str(path), "--out", out]
        code, stderr = invoke(args, env)
        if command in ("roster", "cluster", "osv") and code == 0:
            return  # hypothesis found a valid roster, cluster or OSV record: nothing to refuse
        assert_one_clear_line(code, stderr)
        assert not Path(tmp, "state").exists(), "bad input left state behind"


def _as_zip(path: Path, member: bytes) -> Path:
    import zipfile

    zipped = path.with_suffix(".zip")
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("RECORD-1.json", member)
    return zipped


urls = st.one_of(
    st.text(max_size=40),
    # after a scheme, text that names no host a resolver would look up (no network here: a lookup only waits)
    st.builds(
        lambda s, rest: f"{s}://{rest}",
        st.sampled_from(["redis", "rediss", "http", "unix", "tcp"]),
        st.text(alphabet=" []:@/?#%!\\", max_size=12),
    ),
    st.sampled_from(["redis://127.0.0.1:99999/0", "redis://127.0.0.1:1/x", "redis://:pw@", "redis://[::1", "unix://"]),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(url=urls.filter(lambda u: u != "" and "\x00" not in u))  # empty means unset: the embedded server
def test_malformed_redis_urls_get_one_line_everywhere(url: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    tmp = tmp_path_factory.mktemp("urls")
    for args in (["catalog", "stats"], ["takeover", "some-run"], ["status"]):
        code, stderr = invoke(args, {"CORTEX_REDIS_URL": url, "CORTEX_STATE_DIR": str(tmp)})
        if args == ["status"] and code in (0, 5):
            continue  # status reads files; a URL it does not use is not its business unless malformed
        assert_one_clear_line(code, stderr)


@pytest.mark.parametrize(
    "variable,value",
    [
        ("CORTEX_CATALOG_URL", "ftp://catalog"),
        ("CORTEX_OSV_API", "not a url"),
        ("CORTEX_REDIS_CONNECT_ATTEMPTS", "-1"),
        ("CORTEX_STALL_S", "soon"),
        ("CORTEX_REDIS_OUTAGE_S", "-5"),
    ],
)
def test_malformed_settings_name_the_variable(variable: str, value: str, tmp_path: Path) -> None:
    code, stderr = invoke(["run", str(tmp_path / "plan.json")], {variable: value})
    assert_one_clear_line(code, stderr)
    assert variable in stderr


def test_every_command_that_reaches_redis_tries_as_often_as_configured(tmp_path: Path) -> None:
    """``CORTEX_REDIS_CONNECT_ATTEMPTS`` holds for every command that connects (status, watch, takeover and the
    control commands ignored it and tried 5 times over 3 s)."""
    env = {
        "CORTEX_REDIS_URL": f"unix://{tmp_path}/no-server.sock",
        "CORTEX_REDIS_CONNECT_ATTEMPTS": "2",
        "CORTEX_STATE_DIR": str(tmp_path / "state"),
    }
    commands = [["status"], ["watch", "r1"], ["takeover", "r1"], ["drain", "r1", "w1"], ["catalog", "stats"]]
    for args in commands:
        code, stderr = invoke(args, env)
        assert "after 2 attempts" in stderr and code not in (0, 1), (args, code, stderr)
