"""What every ``cortex`` command shares: the consoles, settings, the Redis a command talks to, options that recur,
and the one error path.

Commands raise ``CortexError`` subclasses and never print errors themselves: ``cortex.cli.main`` prints the message
literally (no Rich markup is interpreted, so ``[a-z0-9]`` in a message stays as it is) and exits with the error's
code from ``cortex.errors.EXIT_CODES``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
import traceback
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from cortex.errors import CortexError, ExitCode, InputError

if TYPE_CHECKING:
    import redis.asyncio as aredis

    from cortex.config import Settings

T = TypeVar("T")

console = Console()
"""Standard output: what a command was asked for."""
err = Console(stderr=True)
"""Standard error: errors, warnings and progress notes."""

StateDir = Annotated[
    Path | None, typer.Option("--state-dir", help="State directory (default: CORTEX_STATE_DIR or .cortex)")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]
MetricsHost = Annotated[
    str, typer.Option("--metrics-host", help="Address /metrics binds (0.0.0.0 for every interface)")
]


def check_host(host: str, source: str) -> str:
    """``host`` if it is an IP address or a host name (what a server may bind)."""
    import ipaddress

    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_address(host))
    if re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})", host):
        return host
    raise InputError(source, f"{host!r} is not an address or host name", hint="e.g. 127.0.0.1 or 0.0.0.0")


def example(*lines: str) -> str:
    """A command's help epilog: its examples, printed as written (``\\b`` keeps click from rewrapping them)."""
    return "\b\nExamples:\n" + "\n".join(f"  $ {line}" for line in lines)


def print_json(data: Any) -> None:
    """Exact JSON on standard output, never through Rich (which wraps long lines and breaks strings)."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


def say_error(message: str) -> None:
    """Print ``error: message`` on standard error, literally."""
    line = Text("error: ", style="bold red")
    line.append(message)
    err.print(line, highlight=False, soft_wrap=True)


def exit_for(exc: BaseException) -> int:
    """Print what went wrong and return the exit code: a ``CortexError``'s own, or 70 (internal error) with the
    traceback for anything else, which is a bug."""
    if isinstance(exc, CortexError):
        say_error(str(exc))
        return int(exc.exit_code)
    traceback.print_exception(exc, file=sys.stderr)
    say_error(f"internal error ({type(exc).__name__}); this is a bug in Cortex, please report it with the above")
    return int(ExitCode.INTERNAL_ERROR)


def settings() -> Settings:
    """The ``CORTEX_*`` settings; a malformed variable is bad input naming it."""
    from pydantic import ValidationError

    from cortex.config import Settings

    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "CORTEX_" + str(first["loc"][0]).upper() if first["loc"] else "CORTEX_*"
        raise InputError(name, str(first["msg"]).removeprefix("Value error, ")) from exc


def state_dir(option: Path | None) -> Path:
    """``--state-dir``, else ``CORTEX_STATE_DIR``, else ``.cortex``."""
    return option or settings().state_dir


@contextlib.contextmanager
def private_or_configured_redis() -> Iterator[str]:
    """``CORTEX_REDIS_URL`` when set; otherwise a private embedded server for the duration of the block."""
    url = settings().redis_url
    if url:
        yield url
        return
    from cortex.coord.server import EmbeddedRedis

    with EmbeddedRedis() as server:
        yield server.url


async def redis_client(url: str) -> aredis.Redis:
    """A client of ``url`` for a command: ``CORTEX_REDIS_CONNECT_ATTEMPTS`` tries, then a clear error."""
    from cortex.coord.connection import connect

    return await connect(url, attempts=settings().redis_connect_attempts)


def require_redis_url(why: str) -> str:
    """``CORTEX_REDIS_URL``, which ``why`` needs (a process joining a run, a take-over)."""
    url = settings().redis_url
    if not url:
        raise InputError("CORTEX_REDIS_URL", f"must be set {why}", hint="e.g. redis://host:6379/0")
    return url


RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_run_id(run_id: str, source: str = "RUN_ID") -> str:
    """``run_id`` if it is one (letters, digits, '.', '_', '-'; it names files, so no path may hide in it)."""
    if not RUN_ID.fullmatch(run_id):
        raise InputError(source, f"{run_id!r} is not a run id", hint="use letters, digits, '.', '_' or '-'")
    return run_id


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a new event loop."""
    return asyncio.run(coro)
