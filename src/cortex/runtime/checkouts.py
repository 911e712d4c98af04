"""A task's target on the node that runs it: the plan's directory, or (a target from a git remote) this node's own
checkout at the plan's commit; and, after a task made a branch there, where that branch went: pushed to the remote
when the fleet file says so, else kept in the checkout and reported with the node and path."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from typing import Any

from cortex.errors import RemoteError, TaskFailed
from cortex.models.plan import Remote
from cortex.toolset.remotes import Workspace, push_branch, redact


async def resolve(fields: dict[str, str], state_dir: Path) -> Path | None:
    """The target directory a task message names: its remote checked out under ``<state>/workspace`` (a failed
    clone fails the attempt, retryably), or the plan's path."""
    if fields.get("target_remote"):
        remote = Remote.model_validate_json(fields["target_remote"])
        try:
            return await asyncio.to_thread(Workspace(state_dir / "workspace").checkout, fields["target_name"], remote)
        except RemoteError as exc:
            raise TaskFailed(str(exc)) from exc
    return Path(fields["target_path"]) if fields.get("target_path") else None


def remote_url(fields: dict[str, str]) -> str | None:
    """The URL (credentials redacted) of the remote a task message's target comes from, if any."""
    if not fields.get("target_remote"):
        return None
    return redact(Remote.model_validate_json(fields["target_remote"]).url)


async def publish(fields: dict[str, str], root: Path | None, output: dict[str, Any]) -> None:
    """A branch the task made (``branch`` and ``commit`` in its output) on a remote target: pushed when the fleet
    file asks (``pushed``, ``remote``), else where it is kept (``kept_at``: node and checkout)."""
    branch, commit = output.get("branch"), output.get("commit")
    if not (fields.get("target_remote") and root and isinstance(branch, str) and isinstance(commit, str)):
        return
    remote = Remote.model_validate_json(fields["target_remote"])
    if remote.push:
        try:
            await asyncio.to_thread(push_branch, root, remote, branch)
        except RemoteError as exc:
            raise TaskFailed(f"branch {branch} made but not pushed: {exc}") from exc
        output.update(pushed=True, remote=redact(remote.url))
    else:
        node = os.environ.get("CORTEX_NODE") or socket.gethostname()
        output.update(pushed=False, kept_at=f"{node}:{root}")
