"""Catalog client used by the runtime. When the API is down, reads come from a local cache flagged stale and
writes wait in a local queue, replayed in order when the API answers again (failure scenario 5)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import httpx

from cortex.errors import CatalogRejected, CatalogUnavailable
from cortex.files import write_atomic
from cortex.models.assets import Asset, LineageEdge

T = TypeVar("T")
Availability = Literal["reachable", "degraded", "absent"]


@dataclass
class Read(Generic[T]):
    """A read result; ``stale`` when it came from the cache because the API was down."""

    value: T
    stale: bool


class CatalogClient:
    """Async client of the catalog REST API with a cache directory for reads and queued writes."""

    def __init__(self, base_url: str, cache_dir: Path, *, token: str | None = None, timeout_s: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.cache_dir = cache_dir
        self.queue_file = cache_dir / "pending-writes.jsonl"
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=timeout_s)

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self.http.aclose()

    # ------------------------------------------------------------------ reads
    def _cache_path(self, path: str, params: dict[str, Any]) -> Path:
        key = hashlib.sha256(json.dumps([path, sorted(params.items())]).encode()).hexdigest()
        return self.cache_dir / "reads" / f"{key}.json"

    async def _read(self, path: str, params: dict[str, Any] | None = None) -> Read[Any]:
        params = params or {}
        cached = self._cache_path(path, params)
        try:
            reply = await self.http.get(path, params=params)
        except httpx.TransportError as exc:
            return self._from_cache(cached, exc)
        if reply.status_code >= 500:
            return self._from_cache(
                cached, httpx.HTTPStatusError("server error", request=reply.request, response=reply)
            )
        if reply.status_code == 404:
            write_atomic(cached, "null")
            return Read(None, stale=False)
        if reply.status_code >= 400:
            raise CatalogRejected(reply.status_code, reply.json().get("detail"))
        write_atomic(cached, reply.text)
        return Read(reply.json(), stale=False)

    @staticmethod
    def _from_cache(cached: Path, exc: Exception) -> Read[Any]:
        try:
            return Read(json.loads(cached.read_text()), stale=True)
        except FileNotFoundError:
            raise CatalogUnavailable(f"catalog unreachable ({type(exc).__name__}) and nothing cached") from exc

    async def get(self, asset_id: str) -> Read[Asset | None]:
        """One asset (None when it does not exist)."""
        r = await self._read(f"/assets/{asset_id}")
        return Read(Asset.model_validate(r.value) if r.value else None, r.stale)

    async def search(self, q: str, limit: int = 20) -> Read[list[Asset]]:
        """Assets having every word of ``q``."""
        r = await self._read("/search", {"q": q, "limit": limit})
        return Read([Asset.model_validate(a) for a in r.value], r.stale)

    async def lineage(self, asset_id: str, direction: str = "both", depth: int = 1) -> Read[dict[str, Any]]:
        """Lineage of an asset as the API returns it."""
        return await self._read(f"/lineage/{asset_id}", {"direction": direction, "depth": depth})

    # ----------------------------------------------------------------- writes
    async def upsert(self, asset: Asset) -> Literal["sent", "queued"]:
        """Create or replace an asset; queued when the API is down."""
        return await self._write("PUT", f"/assets/{asset.id}", json.loads(asset.model_dump_json()))

    async def link(self, edge: LineageEdge) -> Literal["sent", "queued"]:
        """Record a lineage edge; queued when the API is down."""
        return await self._write("POST", "/lineage", json.loads(edge.model_dump_json()))

    async def delete(self, asset_id: str) -> Literal["sent", "queued"]:
        """Delete an asset; queued when the API is down."""
        return await self._write("DELETE", f"/assets/{asset_id}", None)

    def pending(self) -> list[dict[str, Any]]:
        """Writes waiting for the API, oldest first."""
        if not self.queue_file.exists():
            return []
        return [json.loads(line) for line in self.queue_file.read_text().splitlines() if line.strip()]

    def _enqueue(self, item: dict[str, Any]) -> None:
        self.queue_file.parent.mkdir(parents=True, exist_ok=True)
        with self.queue_file.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(item) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    async def _send(self, item: dict[str, Any]) -> None:
        reply = await self.http.request(item["method"], item["path"], json=item["body"])
        if reply.status_code >= 500:
            raise httpx.HTTPStatusError("server error", request=reply.request, response=reply)
        if reply.status_code >= 400 and not (item["method"] == "DELETE" and reply.status_code == 404):
            raise CatalogRejected(reply.status_code, reply.json().get("detail"))

    async def _write(self, method: str, path: str, body: Any) -> Literal["sent", "queued"]:
        item = {"method": method, "path": path, "body": body}
        if self.pending():
            await self.replay()
            if self.pending():  # earlier writes still wait: keep the order
                self._enqueue(item)
                return "queued"
        try:
            await self._send(item)
        except (httpx.TransportError, httpx.HTTPStatusError):
            self._enqueue(item)
            return "queued"
        return "sent"

    async def replay(self) -> int:
        """Send queued writes in order until the API stops answering; returns how many were sent.

        A queued write the API now refuses (4xx, e.g. an edge to an asset deleted meanwhile) is moved to
        ``rejected-writes.jsonl`` with the reason, so it neither blocks the queue nor disappears.
        """
        items = self.pending()
        done = 0
        sent = 0
        for item in items:
            try:
                await self._send(item)
                sent += 1
            except CatalogRejected as exc:
                with (self.cache_dir / "rejected-writes.jsonl").open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps({**item, "reason": str(exc)}) + "\n")
            except (httpx.TransportError, httpx.HTTPStatusError):
                break
            done += 1
        if items:
            write_atomic(self.queue_file, "".join(json.dumps(i) + "\n" for i in items[done:]))
        return sent

    async def availability(self) -> Availability:
        """``reachable`` (API ready), ``degraded`` (down, cache present) or ``absent`` (down, no cache)."""
        try:
            reply = await self.http.get("/readyz")
            if reply.status_code == 200:
                return "reachable"
        except httpx.TransportError:
            pass
        reads = self.cache_dir / "reads"
        return "degraded" if reads.is_dir() and any(reads.iterdir()) else "absent"
