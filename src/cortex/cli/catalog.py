"""``cortex catalog ...``: serve the API, discover the fleet, and query the catalog (``--json`` for scripts)."""

from __future__ import annotations

import contextlib
import functools
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from cortex.cli.common import AsJson, StateDir, console, err, example, print_json, settings
from cortex.cli.common import state_dir as resolve_state_dir
from cortex.errors import AssetNotFound, InputError

catalog_app = typer.Typer(no_args_is_help=True, help="The asset catalog: serve, discover, query.")
T = TypeVar("T")


def parse_every(text: str) -> float:
    """``30s``, ``15m`` or ``2h`` in seconds."""
    m = re.fullmatch(r"(\d+)([smh])", text.strip())
    if not m or int(m.group(1)) == 0:
        raise InputError("--every", f"{text!r} is not a period", hint="use a positive number with s, m or h, e.g. 15m")
    return int(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[m.group(2)]


@contextlib.contextmanager
def _redis_url(state_dir: Path | None) -> Iterator[str]:
    """``CORTEX_REDIS_URL``, or the catalog's persistent embedded server under the state directory (attached to
    when another command already runs it)."""
    from cortex.coord.server import shared_embedded

    s = settings()
    if s.redis_url:
        yield s.redis_url
        return
    with shared_embedded((state_dir or s.state_dir).resolve() / "catalog-redis") as url:
        yield url


def _with_store(state_dir: Path | None, fn: Callable[[Any], Awaitable[T]]) -> T:
    import asyncio

    from cortex.catalog.store import CatalogStore
    from cortex.cli.common import redis_client

    async def run(url: str) -> T:
        client = await redis_client(url)
        try:
            return await fn(CatalogStore(client))
        finally:
            await client.aclose()

    with _stop_cleanly_on_signals(), _redis_url(state_dir) as url:
        return asyncio.run(run(url))


def _print_assets(assets: list[Any], as_json: bool) -> None:
    if as_json:
        print_json([json.loads(a.model_dump_json()) for a in assets])
        return
    table = Table("id", "type", "namespace", "health", "tags")
    for a in assets:
        table.add_row(a.id, a.type, a.namespace, a.health.status.value, ", ".join(a.tags))
    console.print(table)


@catalog_app.command(epilog=example("cortex catalog serve --config catalog.yaml --port 8080"))
def serve(
    config: Annotated[Path | None, typer.Option("--config", help="Catalog YAML (tokens, limits)")] = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    read_open: Annotated[bool, typer.Option("--read-open", help="Allow reads without a token")] = False,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Worker processes sharing the port (about one per core)")
    ] = 1,
    state_dir: StateDir = None,
) -> None:
    """Serve the REST and GraphQL API (uvicorn), in --workers processes."""
    from cortex.catalog.config import CatalogConfig
    from cortex.catalog.server import serve as run_server
    from cortex.roster import load_model

    cfg = load_model(CatalogConfig, config) if config else CatalogConfig()
    if read_open:
        cfg = cfg.model_copy(update={"read_open": True})
    if not cfg.tokens:
        err.print("no tokens configured: writes are refused; create one with `cortex catalog token NAME`")
    with _stop_cleanly_on_signals(), _redis_url(state_dir) as url:
        run_server(cfg, url, host, port, workers)


@contextlib.contextmanager
def _stop_cleanly_on_signals() -> Iterator[None]:
    """uvicorn shuts down gracefully on SIGTERM or SIGINT and then raises the signal again with the handler it found
    installed. Python's default for SIGTERM ends the process on the spot, which would leave the embedded
    redis-server running; this handler turns both signals into an orderly exit through every ``with`` block."""
    import signal

    def leave(signum: int, frame: object) -> None:
        raise SystemExit(0)

    previous = {sig: signal.signal(sig, leave) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@catalog_app.command(epilog=example("cortex catalog token ci --scope read --scope write"))
def token(name: str, scope: Annotated[list[str], typer.Option("--scope")] = ["read"]) -> None:  # noqa: B006
    """Make a bearer token; prints it once, and the config entry (its SHA-256 digest) to paste under tokens."""
    from cortex.catalog.config import new_token

    bad = sorted(set(scope) - {"read", "write"})
    if bad:
        raise InputError("--scope", f"{bad[0]!r} is not a scope", hint="use read or write")
    secret, spec = new_token(name, sorted(set(scope)))  # type: ignore[arg-type]
    print(f"token (shown once): {secret}")
    print("config entry:")
    print_json(json.loads(spec.model_dump_json()))


@catalog_app.command(
    epilog=example("cortex catalog discover examples/fleet", "cortex catalog discover fleet.yaml --every 15m")
)
def discover(
    paths: Annotated[list[Path], typer.Argument(help="Directories of repositories, or fleet files of git remotes")],
    every: Annotated[str | None, typer.Option("--every", help="Repeat on a schedule, e.g. 15m")] = None,
    passes: Annotated[int | None, typer.Option("--passes", min=1, help="With --every: stop after N passes")] = None,
    state_dir: StateDir = None,
    as_json: AsJson = False,
) -> None:
    """Discover assets and lineage under PATHS; incremental (unchanged files are skipped)."""
    import dataclasses

    from cortex.catalog.discovery import discover as run_discovery

    missing = [p for p in paths if not p.is_dir() and not p.is_file()]
    if missing:
        raise InputError(str(missing[0]), "not a directory or fleet file", hint="pass directories of repositories")
    period = parse_every(every) if every else None
    done = 0
    while True:
        started = time.monotonic()
        roots, remotes = _roots(paths, state_dir)  # each pass fetches the fleet's remotes again
        result = _with_store(state_dir, functools.partial(run_discovery, roots=roots, remotes=remotes))
        data = {**dataclasses.asdict(result), "writes": result.writes}
        if as_json:
            print_json(data)
        else:
            console.print(", ".join(f"{k} {v}" for k, v in data.items()), markup=False)
        done += 1
        if period is None or (passes is not None and done >= passes):
            return
        time.sleep(max(0.0, period - (time.monotonic() - started)))  # the schedule's wait between passes


def _roots(paths: list[Path], state_dir: Path | None) -> tuple[list[Path], dict[str, str]]:
    """Directories to discover: those given, and the checkouts of fleet files' remotes (with their URLs)."""
    from cortex.toolset.remotes import redact, remote_targets

    roots, remotes = [], {}
    for p in paths:
        if p.is_dir():
            roots.append(p)
            continue
        for t in remote_targets(p, resolve_state_dir(state_dir) / "workspace"):
            roots.append(Path(t.path))
            remotes[t.path] = redact(t.remote.url) if t.remote else ""
    return roots, remotes


@catalog_app.command(epilog=example("cortex catalog get repo:payments-api --json"))
def get(asset_id: str, state_dir: StateDir = None, as_json: AsJson = False) -> None:
    """Show one asset."""
    found = _with_store(state_dir, lambda store: store.get(asset_id))
    if found is None:
        raise AssetNotFound(asset_id)
    if as_json:
        print_json(json.loads(found.model_dump_json()))
    else:
        _print_assets([found], False)


@catalog_app.command(epilog=example("cortex catalog search lodash --json"))
def search(q: str, limit: int = 20, state_dir: StateDir = None, as_json: AsJson = False) -> None:
    """Assets having every word of Q."""
    _print_assets(_with_store(state_dir, lambda store: store.search(q, limit=limit)), as_json)


@catalog_app.command(epilog=example("cortex catalog lineage repo:payments-api --depth 2"))
def lineage(
    asset_id: str,
    direction: Annotated[str, typer.Option(help="upstream, downstream or both")] = "both",
    depth: int = 1,
    state_dir: StateDir = None,
    as_json: AsJson = False,
) -> None:
    """Lineage of an asset."""
    if direction not in ("upstream", "downstream", "both"):
        raise InputError("--direction", f"{direction!r} is not a direction", hint="upstream, downstream or both")
    if not 1 <= depth <= 50:
        raise InputError("--depth", f"{depth} is out of range", hint="between 1 and 50")

    async def walk(store: Any) -> Any:
        return await store.lineage(asset_id, direction=direction, depth=depth)

    found = _with_store(state_dir, walk)
    if as_json:
        print_json(
            {
                "root": found.root,
                "nodes": [n.id for n in found.nodes],
                "edges": [json.loads(e.model_dump_json()) for e in found.edges],
            }
        )
        return
    for e in found.edges:
        console.print(f"{e.upstream} --{e.relation}--> {e.downstream}", markup=False, highlight=False)


@catalog_app.command(epilog=example("cortex catalog stats --json"))
def stats(state_dir: StateDir = None, as_json: AsJson = False) -> None:
    """Counts of assets and lineage edges."""
    import dataclasses

    s = _with_store(state_dir, lambda store: store.stats())
    if as_json:
        print_json(dataclasses.asdict(s))
        return
    console.print(f"assets {s.assets}, edges {s.edges}", markup=False)
    for kind in ("by_type", "by_health", "by_namespace"):
        console.print(f"{kind}: " + ", ".join(f"{k} {v}" for k, v in getattr(s, kind).items()), markup=False)
