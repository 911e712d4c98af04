"""Settings read from ``CORTEX_*`` environment variables, at the edges only (the CLI and process entry points)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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

    redis_connect_attempts: int = 5
    """How many times to try reaching ``redis_url`` before giving up with a clear error."""
