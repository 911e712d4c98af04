"""Several hosts on one machine, for tests: each "host" is a network namespace of its own, joined to the others by
veth pairs on a bridge in a hub namespace (addresses in 10.213.N.0/24, a range only these namespaces use; no
traffic leaves them), or, where namespaces cannot be made (not root, no ``ip``), a name for processes on loopback.

Nothing is shared between the processes of two hosts but the network: each gets its own state directory, and in
namespace mode its own network stack. ``kill`` stops a host entirely: every process in its namespace (or every
process group started on it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import uuid
from pathlib import Path


def namespaces_possible() -> str | None:
    """None when network namespaces can be made here; else why not."""
    if os.environ.get("CORTEX_TEST_NO_NAMESPACES"):
        return "CORTEX_TEST_NO_NAMESPACES is set"
    if os.geteuid() != 0:
        return "not root"
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2)"
    probe = f"cxprobe{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], check=False)
    return None


class Hosts:
    """Named hosts; ``mode`` is ``namespaces`` or ``loopback``."""

    def __init__(self, names: list[str], *, namespaces: bool) -> None:
        self.mode = "namespaces" if namespaces else "loopback"
        self.tag = uuid.uuid4().hex[:5]
        self.subnet = 10 + int(self.tag, 16) % 200
        self.names = names
        self.procs: dict[str, list[subprocess.Popen[bytes]]] = {n: [] for n in names}
        self.made: list[str] = []
        if namespaces:
            self._build()

    def ns(self, host: str) -> str:
        """The namespace of ``host``."""
        return f"cx{self.tag}-{self.names.index(host)}"

    def address(self, host: str) -> str:
        """Where ``host`` is reached from the others."""
        if self.mode == "loopback":
            return "127.0.0.1"
        return f"10.213.{self.subnet}.{self.names.index(host) + 1}"

    def _ip(self, *args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)

    def _build(self) -> None:
        hub = f"cx{self.tag}-hub"
        self._ip("netns", "add", hub)
        self.made.append(hub)
        self._ip("-n", hub, "link", "add", "br0", "type", "bridge")
        self._ip("-n", hub, "link", "set", "br0", "up")
        for i, host in enumerate(self.names):
            ns = self.ns(host)
            self._ip("netns", "add", ns)
            self.made.append(ns)
            self._ip("-n", hub, "link", "add", f"v{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
            self._ip("-n", hub, "link", "set", f"v{i}", "master", "br0", "up")
            self._ip("-n", ns, "addr", "add", f"{self.address(host)}/24", "dev", "eth0")
            self._ip("-n", ns, "link", "set", "eth0", "up")
            self._ip("-n", ns, "link", "set", "lo", "up")

    def start(self, host: str, argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        """Start ``argv`` on ``host`` (its own session), output to ``log``."""
        prefix = ["ip", "netns", "exec", self.ns(host)] if self.mode == "namespaces" else []
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [*prefix, *argv], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.procs[host].append(proc)
        return proc

    def run(self, host: str, argv: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` on ``host`` to completion."""
        prefix = ["ip", "netns", "exec", self.ns(host)] if self.mode == "namespaces" else []
        return subprocess.run([*prefix, *argv], env=env, capture_output=True, text=True, timeout=timeout, check=False)

    def kill(self, host: str) -> int:
        """SIGKILL every process of ``host``; returns how many."""
        pids: set[int] = set()
        if self.mode == "namespaces":
            out = subprocess.run(["ip", "netns", "pids", self.ns(host)], capture_output=True, text=True, check=False)
            pids = {int(p) for p in out.stdout.split()}
        for proc in self.procs[host]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
                pids.add(proc.pid)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for proc in self.procs[host]:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        return len(pids)

    def close(self) -> None:
        """Stop everything and remove the namespaces."""
        for host in self.names:
            for proc in self.procs[host]:
                if proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGTERM)
            for proc in self.procs[host]:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=20)
            self.kill(host)
        for ns in reversed(self.made):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
