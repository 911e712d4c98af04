"""The catalog store on Redis: assets with secondary indexes and lineage, every change atomic (Lua) and
published as an event. Reads use the indexes; nothing scans the keyspace."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import redis.asyncio as aredis

from cortex.catalog import _scripts
from cortex.coord.keys import CatalogKeys
from cortex.errors import AssetNotFound
from cortex.models.assets import Asset, LineageEdge

FILTERS = ("type", "owner", "namespace", "tag", "health")
"""Index kinds a list can filter on (``q`` filters on words)."""
Direction = Literal["upstream", "downstream", "both"]
_WORD = re.compile(r"[a-z0-9]+")
MAX_WORDS = 64


def words(text: str) -> list[str]:
    """Lowercase search words of ``text``."""
    return sorted(set(_WORD.findall(text.lower())))


def asset_words(asset: Asset) -> list[str]:
    """The words an asset is found by: id, name, type, namespace, owner and tags."""
    text = " ".join([asset.id, asset.name, asset.type, asset.namespace, asset.owner, *asset.tags])
    return words(text)[:MAX_WORDS]


def digest(asset: Asset) -> str:
    """Content digest, ignoring timestamps: an upsert with the same digest writes nothing."""
    body = asset.model_dump(mode="json", exclude={"updated_at", "discovered_at"})
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


@dataclass
class Page:
    """One page of assets and the cursor of the next page (None at the end)."""

    items: list[Asset]
    next_cursor: str | None


@dataclass
class Lineage:
    """Assets reachable from ``root`` within ``depth`` hops, and the edges between them."""

    root: str
    direction: str
    depth: int
    nodes: list[Asset] = field(default_factory=list)
    edges: list[LineageEdge] = field(default_factory=list)


@dataclass
class Stats:
    """Counts of the catalog."""

    assets: int
    edges: int
    by_type: dict[str, int]
    by_health: dict[str, int]
    by_namespace: dict[str, int]
    by_owner: dict[str, int]


class CatalogStore:
    """Asset and lineage store. All writes go through the Lua scripts in ``_scripts``."""

    intersect_max = 4000
    """Queries intersect filter sets when the smallest has at most this many members (see ``_scripts.QUERY``)."""
    walk_budget = 2000
    """Otherwise they walk the ordered index for at most this many candidates before intersecting."""

    def __init__(self, redis: aredis.Redis, keys: CatalogKeys | None = None) -> None:
        self.redis = redis
        self.keys = keys or CatalogKeys()
        self._upsert = redis.register_script(_scripts.UPSERT)
        self._delete = redis.register_script(_scripts.DELETE)
        self._link = redis.register_script(_scripts.LINK)
        self._unlink = redis.register_script(_scripts.UNLINK)
        self._query = redis.register_script(_scripts.QUERY)
        self._walk = redis.register_script(_scripts.LINEAGE)

    @staticmethod
    def _event(op: str, **data: object) -> str:
        return json.dumps({"op": op, "ts": time.time(), **data}, sort_keys=True)

    async def upsert(self, asset: Asset) -> Literal["created", "updated", "unchanged"]:
        """Create or replace ``asset``; moves it between index sets as its type, tags or health change."""
        now = time.time()
        if asset.discovered_at is None:
            previous = await self.get(asset.id)
            asset = asset.model_copy(update={"discovered_at": previous.discovered_at if previous else now})
        stored = asset.model_copy(update={"updated_at": now})
        result = await self._upsert(
            args=[
                self.keys.prefix,
                asset.id,
                stored.model_dump_json(),
                asset.type,
                asset.owner,
                asset.namespace,
                asset.health.status.value,
                json.dumps(asset.tags),
                json.dumps(asset_words(asset)),
                now,
                digest(asset),
                self._event("upsert", id=asset.id, type=asset.type),
            ]
        )
        return result  # type: ignore[no-any-return]

    async def delete(self, asset_id: str) -> bool:
        """Delete an asset, its index entries and its lineage edges; False when it did not exist."""
        removed = int(await self._delete(args=[self.keys.prefix, asset_id, self._event("delete", id=asset_id)]))
        return removed >= 0

    async def link(self, edge: LineageEdge) -> bool:
        """Record a lineage edge (True when new). Both assets must exist."""
        result = int(
            await self._link(
                args=[
                    self.keys.prefix,
                    edge.upstream,
                    edge.downstream,
                    edge.relation,
                    edge.model_dump_json(),
                    self._event("link", upstream=edge.upstream, downstream=edge.downstream, relation=edge.relation),
                ]
            )
        )
        if result < 0:
            raise AssetNotFound(edge.upstream if result == -1 else edge.downstream)
        return result == 1

    async def unlink(self, upstream: str, downstream: str, relation: str) -> bool:
        """Remove a lineage edge; False when it did not exist."""
        event = self._event("unlink", upstream=upstream, downstream=downstream, relation=relation)
        return bool(await self._unlink(args=[self.keys.prefix, upstream, downstream, relation, event]))

    async def get_raw(self, asset_id: str) -> str | None:
        """The stored JSON of an asset (written by this store from a validated ``Asset``), or None."""
        raw: str | None = await self.redis.get(self.keys.asset(asset_id))
        return raw

    async def get(self, asset_id: str) -> Asset | None:
        """The asset, or None."""
        raw = await self.get_raw(asset_id)
        return Asset.model_validate_json(raw) if raw else None

    async def get_many_raw(self, ids: Iterable[str]) -> list[str]:
        """Stored JSON of the assets that exist among ``ids``, in the given order."""
        ids = list(ids)
        if not ids:
            return []
        return [r for r in await self.redis.mget([self.keys.asset(i) for i in ids]) if r]

    async def get_many(self, ids: Iterable[str]) -> list[Asset]:
        """The assets that exist among ``ids``, in the given order."""
        return [Asset.model_validate_json(r) for r in await self.get_many_raw(ids)]

    async def list_ids(
        self,
        filters: dict[str, str] | None = None,
        *,
        q: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> tuple[list[str], str | None]:
        """Ids matching every filter (and every word of ``q``) in id order after ``cursor``, and the next cursor."""
        sets = [self.keys.index(kind, value) for kind, value in sorted((filters or {}).items())]
        sets += [self.keys.index("word", w) for w in words(q or "")]
        if sets:
            args = [self.keys.prefix, "id", limit + 1, cursor or "", self.intersect_max, self.walk_budget]
            ids = await self._query(keys=sets, args=args)
        else:
            start = f"({cursor}" if cursor else "-"
            ids = await self.redis.zrangebylex(self.keys.all, start, "+", start=0, num=limit + 1)
        page = list(ids[:limit])
        return page, page[-1] if len(ids) > limit and page else None

    async def list_assets(
        self,
        filters: dict[str, str] | None = None,
        *,
        q: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> Page:
        """Assets matching every filter (and every word of ``q``), ordered by id, after ``cursor``."""
        ids, nxt = await self.list_ids(filters, q=q, cursor=cursor, limit=limit)
        return Page(items=await self.get_many(ids), next_cursor=nxt)

    async def search_ids(self, q: str, *, limit: int = 20) -> list[str]:
        """Ids of assets having every word of ``q``, most recently updated first."""
        terms = words(q)
        if not terms:
            return []
        sets = [self.keys.index("word", w) for w in terms]
        args = [self.keys.prefix, "recent", limit, "", self.intersect_max, self.walk_budget]
        return list(await self._query(keys=sets, args=args))

    async def search(self, q: str, *, limit: int = 20) -> list[Asset]:
        """Assets having every word of ``q``, most recently updated first."""
        return await self.get_many(await self.search_ids(q, limit=limit))

    async def lineage_raw(
        self, asset_id: str, *, direction: Direction = "both", depth: int = 1, max_nodes: int = 1000
    ) -> tuple[list[str], list[str]]:
        """Stored JSON of the nodes (by id) and edges within ``depth`` hops: one Lua walk, one round trip."""
        reply = await self._walk(args=[self.keys.prefix, asset_id, direction, depth, max_nodes])
        if reply == -1:
            raise AssetNotFound(asset_id)
        nodes, edges = reply
        return list(nodes), list(edges)

    async def lineage(self, asset_id: str, *, direction: Direction = "both", depth: int = 1) -> Lineage:
        """Assets and edges within ``depth`` hops of ``asset_id``, upstream, downstream or both."""
        nodes, edges = await self.lineage_raw(asset_id, direction=direction, depth=depth)
        return Lineage(
            root=asset_id,
            direction=direction,
            depth=depth,
            nodes=[Asset.model_validate_json(n) for n in nodes],
            edges=sorted(
                (LineageEdge.model_validate_json(e) for e in edges),
                key=lambda e: (e.upstream, e.relation, e.downstream),
            ),
        )

    async def stats(self) -> Stats:
        """Asset counts in all and by type, health, namespace and owner; the number of lineage edges."""
        counts: dict[str, dict[str, int]] = {}
        for kind in ("type", "health", "namespace", "owner"):
            values = sorted(await self.redis.smembers(self.keys.values(kind)))
            pipe = self.redis.pipeline(transaction=False)
            for v in values:
                pipe.scard(self.keys.index(kind, v))
            counts[kind] = dict(zip(values, await pipe.execute(), strict=True))
        return Stats(
            assets=int(await self.redis.zcard(self.keys.all)),
            edges=int(await self.redis.get(self.keys.edges) or 0),
            by_type=counts["type"],
            by_health=counts["health"],
            by_namespace=counts["namespace"],
            by_owner=counts["owner"],
        )
