"""Git remotes on the host that works on them (the planner's, each node's): every host keeps its own checkouts in
a workspace cache. No filesystem is shared.

The plan pins each target to the commit the planner saw, so every node works on the same tree. A checkout is
``<workspace>/<name>-<url digest>/<commit>``: shallow, made once per commit under a lock per repository (an
``flock`` on ``.lock`` beside it: the node's worker processes share it), and reused by later runs. Credentials
travel in git's environment (``GIT_CONFIG_*``), never on a command line, in a URL, a log or a report.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cortex.errors import InputError, RemoteError
from cortex.models.plan import Remote, Target
from cortex.repo.measures import survey
from cortex.repo.targets import traits_of
from cortex.roster.fleet import load_fleet

GIT_TIMEOUT_S = 300.0
KEEP_CHECKOUTS = 3
"""Checkouts kept per repository (the newest by use); older ones are removed when a new one is made."""


def redact(url: str) -> str:
    """``url`` without a user or password in it (for messages)."""
    return re.sub(r"(://)[^/@]*@", r"\1***@", url)


def git_env(remote: Remote) -> dict[str, str]:
    """Git's environment for ``remote``: never a prompt, and its credentials (when named and set) as an HTTP
    header through ``GIT_CONFIG_*``, so they appear on no command line."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "LC_ALL": "C"}
    secret = os.environ.get(remote.credentials or "") if remote.credentials else None
    if secret:
        pair = secret if ":" in secret else f"x-access-token:{secret}"
        header = "Authorization: Basic " + base64.b64encode(pair.encode()).decode()
        env.update({"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.extraHeader", "GIT_CONFIG_VALUE_0": header})
    return env


def git(remote: Remote, *args: str, cwd: Path | None = None) -> str:
    """Run git for ``remote``; a failure raises ``RemoteError`` with git's message, the URL redacted."""
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=git_env(remote),
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RemoteError(f"git {args[0]} for {redact(remote.url)}: {exc}") from exc
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise RemoteError(f"git {args[0]} for {redact(remote.url)} failed: {redact(last)}")
    return done.stdout.strip()


class Workspace:
    """The checkouts of one host, under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def repo_dir(self, name: str, url: str) -> Path:
        """Where the checkouts of one repository live."""
        return self.root / f"{name}-{hashlib.sha256(url.encode()).hexdigest()[:12]}"

    @contextmanager
    def locked(self, name: str, url: str) -> Iterator[Path]:
        """The repository's directory, locked against the other processes of this host."""
        d = self.repo_dir(name, url)
        d.mkdir(parents=True, exist_ok=True)
        with (d / ".lock").open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)  # blocks only while another process clones or fetches this repository
            try:
                yield d
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def checkout(self, name: str, remote: Remote) -> Path:
        """The checkout of ``remote`` at its pinned commit (or the branch's head when none is pinned, at
        planning), made if missing: ``<repo dir>/<commit>/<name>`` (the work tree keeps the target's name, which
        tools report). Returns its directory."""
        with self.locked(name, remote.url) as d:
            if remote.commit and (d / remote.commit / name / ".git").is_dir():
                os.utime(d / remote.commit)
                return d / remote.commit / name
            incoming = d / f".incoming-{os.getpid()}"
            shutil.rmtree(incoming, ignore_errors=True)
            tree = incoming / name
            args = ["clone", "--quiet", "--depth", "1", "--no-tags"]
            args += ["--branch", remote.branch] if remote.branch else []
            git(remote, *args, "--", remote.url, str(tree))
            head = git(remote, "rev-parse", "HEAD", cwd=tree)
            if remote.commit and head != remote.commit:
                git(remote, "fetch", "--quiet", "--depth", "1", "origin", remote.commit, cwd=tree)
                git(remote, "checkout", "--quiet", "--detach", remote.commit, cwd=tree)
                head = remote.commit
            final = d / head
            if (final / name / ".git").is_dir():  # this commit is here already (planned again): keep what is in use
                shutil.rmtree(incoming, ignore_errors=True)
                return final / name
            shutil.rmtree(final, ignore_errors=True)  # a leftover of a process that died mid-way, if any
            incoming.rename(final)
            self._prune(d, keep=final)
            return final / name

    def _prune(self, d: Path, keep: Path) -> None:
        olds = sorted(
            (p for p in d.iterdir() if p.is_dir() and p != keep and not p.name.startswith(".")),
            key=lambda p: p.stat().st_mtime,
            reverse=True,
        )
        for old in olds[KEEP_CHECKOUTS - 1 :]:
            shutil.rmtree(old, ignore_errors=True)


def push_branch(root: Path, remote: Remote, branch: str) -> str:
    """Push ``branch`` of the checkout ``root`` to ``remote`` as a new branch: never the remote's default or the
    target's own branch, never forced. Returns the pushed commit."""
    if branch in {remote.branch or "", "main", "master", "HEAD"} or branch.startswith("-"):
        raise RemoteError(f"refusing to push {branch!r}: fix branches are new branches, never the default one")
    commit = git(remote, "rev-parse", f"refs/heads/{branch}", cwd=root)
    git(remote, "push", "--quiet", "--", remote.url, f"refs/heads/{branch}:refs/heads/{branch}", cwd=root)
    return commit


def remote_head(remote: Remote, branch: str) -> str | None:
    """The commit of ``branch`` on the remote, or None when it has no such branch."""
    out = git(remote, "ls-remote", "--heads", "--", remote.url, f"refs/heads/{branch}")
    return out.split()[0] if out else None


def remote_targets(fleet_file: Path, workspace: Path) -> list[Target]:
    """The targets of a fleet file, each checked out in ``workspace`` at its branch's head, which the plan pins."""
    ws = Workspace(workspace)
    out = []
    for e in sorted(load_fleet(fleet_file).targets, key=lambda e: e.name):
        remote = Remote(url=e.url, branch=e.branch, credentials=e.credentials, push=e.push)
        try:
            root = ws.checkout(e.name, remote)
        except RemoteError as exc:
            raise InputError(f"{fleet_file}: {e.name}", str(exc), hint="check the URL, branch and credentials") from exc
        pinned = remote.model_copy(update={"commit": root.parent.name})
        found = survey(root)
        links = [f"{rel} -> {dest}" for rel, dest in found.links]
        out.append(
            Target(
                name=e.name,
                path=str(root),
                traits=traits_of(found),
                links_outside=links,
                remote=pinned,
                measures=found.measures,
            )
        )
    return out
