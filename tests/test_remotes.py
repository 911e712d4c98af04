"""Targets from git remotes: fleet files are checked, checkouts are shallow, pinned, cached and locked per repository,
fix branches are pushed as new branches only, and credentials never reach a command line or a message."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cortex.errors import InputError, RemoteError
from cortex.models.plan import Remote
from cortex.roster.fleet import load_fleet
from cortex.toolset.remotes import Workspace, git_env, push_branch, redact, remote_head, remote_targets

pytestmark = pytest.mark.timeout(60)


def run(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def origin(tmp_path: Path) -> tuple[Path, str]:
    """A bare repository with two commits on main; returns it and the first commit."""
    work = tmp_path / "src"
    work.mkdir()
    run(work, "init", "-q", "-b", "main")
    run(work, "config", "user.email", "t@example.com")
    run(work, "config", "user.name", "t")
    (work / "pyproject.toml").write_text("[project]\nname = 'svc'\n")
    run(work, "add", ".")
    run(work, "commit", "-q", "-m", "one")
    first = run(work, "rev-parse", "HEAD")
    (work / "tests").mkdir()
    (work / "tests" / "test_x.py").write_text("def test_x():\n    pass\n")
    run(work, "add", ".")
    run(work, "commit", "-q", "-m", "two")
    bare = tmp_path / "svc.git"
    run(tmp_path, "clone", "-q", "--bare", str(work), str(bare))
    run(bare, "config", "uploadpack.allowAnySHA1InWant", "true")
    return bare, first


def test_fleet_targets_are_checked_out_and_pinned(origin: tuple[Path, str], tmp_path: Path) -> None:
    bare, _ = origin
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(f"targets:\n  - name: svc\n    url: file://{bare}\n    branch: main\n    push: true\n")
    (target,) = remote_targets(fleet, tmp_path / "ws")
    head = run(bare, "rev-parse", "main")
    assert target.remote is not None and target.remote.commit == head and target.remote.push
    assert Path(target.path).name == "svc" and Path(target.path).parent.name == head
    assert target.traits == ["python", "tests"]
    assert run(Path(target.path), "rev-parse", "--is-shallow-repository") == "true"


def test_a_pinned_commit_is_what_every_node_checks_out(origin: tuple[Path, str], tmp_path: Path) -> None:
    bare, first = origin
    remote = Remote(url=f"file://{bare}", branch="main", commit=first)
    ws = Workspace(tmp_path / "node-ws")
    path = ws.checkout("svc", remote)
    assert path.parent.name == first and run(path, "rev-parse", "HEAD") == first
    assert not (path / "tests").exists()  # the second commit is not in the pinned tree
    assert ws.checkout("svc", remote) == path  # reused, not cloned again
    assert (ws.repo_dir("svc", remote.url) / ".lock").exists()


def test_fix_branches_are_pushed_as_new_branches_only(origin: tuple[Path, str], tmp_path: Path) -> None:
    bare, _ = origin
    remote = Remote(url=f"file://{bare}", branch="main", push=True)
    path = Workspace(tmp_path / "ws").checkout("svc", remote)
    run(path, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "fix")
    run(path, "branch", "cortex/fix-x")
    commit = push_branch(path, remote, "cortex/fix-x")
    assert remote_head(remote, "cortex/fix-x") == commit
    assert remote_head(remote, "main") != commit  # the default branch is untouched
    with pytest.raises(RemoteError, match="never the default one"):
        push_branch(path, remote, "main")
    assert remote_head(remote, "nothing-here") is None


def test_credentials_travel_in_the_environment_and_messages_are_redacted(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("GIT_TOKEN_SVC", "s3cret-token")
    env = git_env(Remote(url="https://git.example.invalid/x.git", credentials="GIT_TOKEN_SVC"))
    assert env["GIT_CONFIG_KEY_0"] == "http.extraHeader" and "s3cret" not in env["GIT_CONFIG_VALUE_0"]
    assert env["GIT_TERMINAL_PROMPT"] == "0"
    assert redact("https://user:pw@host/x.git") == "https://***@host/x.git"
    missing = Remote(url=f"file://{tmp_path}/absent.git", branch="main")
    with pytest.raises(RemoteError, match="git clone for file://.*absent.git failed"):
        Workspace(tmp_path / "ws").checkout("absent", missing)


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        ("targets: []\n", "targets", "at least 1"),
        ("targets:\n  - {name: a, url: 'ftp://x'}\n", "targets.0.url", "must be a git URL"),
        ("targets:\n  - {name: a, url: 'file:///x', credentials: 'lower'}\n", "targets.0.credentials", "pattern"),
        ("targets:\n  - {name: a, url: 'file:///x'}\n  - {name: a, url: 'file:///y'}\n", "targets", "repeated: a"),
        ("targets:\n  - {name: a, url: '--upload-pack=evil'}\n", "targets.0.url", "must be a git URL"),
        ("targets:\n  - {name: a, url: 'file:///x', extra: 1}\n", "targets.0.extra", "Extra inputs"),
    ],
)
def test_bad_fleet_files_name_the_field(tmp_path: Path, text: str, where: str, what: str) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=what) as caught:
        load_fleet(path)
    assert f"{path}: {where}" in str(caught.value)
