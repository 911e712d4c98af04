"""Settings read from ``CORTEX_*`` environment variables, at the edges only (the CLI and process entry points)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REDIS_SCHEMES = ("redis", "rediss", "unix")


def check_redis_url(url: str) -> str:
    """``url`` if it can name a Redis server (scheme, host, port, database index); ``ValueError`` saying what is
    wrong otherwise. Whether a Redis server answers there is for the connection to find out."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # a port that is not a number, brackets that do not close
        raise ValueError(f"{url!r} is not a URL ({exc}); use redis://host:6379/0") from None
    if parts.scheme not in REDIS_SCHEMES:
        raise ValueError(f"{url!r} is not a Redis URL: the scheme must be redis://, rediss:// or unix://")
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError(f"{url!r} names no socket: use unix:///path/to/redis.sock")
        return url
    if not parts.hostname:
        raise ValueError(f"{url!r} names no host: use redis://host:6379/0")
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"{url!r}: port {port} is out of range")
    db = parts.path.strip("/")
    if db and not (db.isdigit() and int(db) < 2**31):
        raise ValueError(f"{url!r}: the database index {db!r} is not a number; use redis://host:6379/0")
    return url


def check_http_url(url: str) -> str:
    """``url`` if it is an http(s) URL with a host; ``ValueError`` otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{url!r} is not a URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http:// or https:// URL with a host")
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"{url!r}: port {port} is out of range")
    return url


class Settings(BaseSettings):
    """Process-wide configuration. Library code takes these values as arguments, never reads the environment."""

    model_config = SettingsConfigDict(env_prefix="CORTEX_", extra="ignore")

    redis_url: str | None = None
    """Redis server to use (``redis://``, ``rediss://`` or ``unix://``). Unset: start a private embedded server."""

    state_dir: Path = Field(default=Path(".cortex"))
    """Where live state files, reports and archives are written."""

    model: str | None = None
    """LLM as ``provider:model``. Unset: tasks that need a model are skipped with the reason."""

    catalog_url: str | None = None
    """Catalog API the run reads and writes (``http://host:port``). Unset: the run works without a catalog."""

    catalog_token: str | None = None
    """Bearer token for the catalog API (needs the write scope for discovery to record assets)."""

    osv_path: Path | None = None
    """OSV advisories for the dependency audit: a directory or an osv.dev ecosystem zip. Unset: the small
    subset bundled for the demo fleet."""

    osv_api: str | None = None
    """OSV API for an online lookup in addition to the offline database (``https://api.osv.dev``). Unset: offline
    only; the default run needs no network."""

    prices: Path | None = None
    """Price table (YAML: model -> input_per_mtok, output_per_mtok) for the report's cost of model calls."""

    target_index_url: str | None = None
    """Package index for the targets' own dependencies when their tests run in environments of their own
    (``https://...``, or ``none`` for local wheels only). Unset: PyPI."""

    target_find_links: str | None = None
    """Directories of wheels for the targets' dependencies, separated by the path separator (``:``)."""

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Level of the structured (JSON lines) log every process writes (``--log-level`` sets it for a command and
    every process it starts)."""

    grafana_url: str | None = None
    """Grafana to annotate with each run's phase transitions (``http://host:3000``). Unset: no annotations."""

    grafana_token: str | None = None
    """Grafana service account token (Bearer) for the annotations API."""

    redis_connect_attempts: int = Field(default=5, ge=1, le=100)
    """How many times to try reaching ``redis_url`` before giving up with a clear error."""

    redis_outage_s: float = Field(default=300.0, ge=0, le=86_400)
    """How long a running coordinator, master, worker or node agent waits out a Redis outage before giving up."""

    stall_s: float = Field(default=120.0, ge=5, le=86_400)
    """A run in which nothing has progressed for this long is stalled: the coordinator names the stuck tasks and
    workers, requeues what no live worker holds, and restarts what is gone."""

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        return None if value is None or value == "" else check_redis_url(value)

    @field_validator("catalog_url", "osv_api", "grafana_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return None if value is None or value == "" else check_http_url(value)
