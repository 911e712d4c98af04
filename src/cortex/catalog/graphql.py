"""GraphQL API of the catalog (strawberry). Every field has a resolver, lineage included (the original's
GraphQL lineage field had none)."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from enum import Enum
from importlib.resources import files
from typing import Any, cast

import strawberry
from pydantic import ValidationError
from starlette.requests import HTTPConnection, Request
from starlette.responses import HTMLResponse
from strawberry.extensions import AddValidationRules, MaxAliasesLimiter, MaxTokensLimiter, QueryDepthLimiter
from strawberry.fastapi import BaseContext, GraphQLRouter
from strawberry.scalars import JSON
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.types import Info

from cortex.catalog.auth import Principal, identify, require
from cortex.catalog.config import CatalogConfig
from cortex.catalog.limits import StreamSlots, cost_rule
from cortex.catalog.store import CatalogStore
from cortex.coord.events import listen
from cortex.coord.keys import CatalogKeys
from cortex.errors import AssetNotFound, AuthError
from cortex.models.assets import Asset, LineageEdge


class Context(BaseContext):
    """Per-request context: the store, the caller and the configuration."""

    def __init__(
        self, store: CatalogStore, principal: Principal, config: CatalogConfig, redis: Any, slots: StreamSlots
    ) -> None:
        super().__init__()
        self.store = store
        self.principal = principal
        self.config = config
        self.redis = redis
        """The client for streams of changes (a pool apart from the requests')."""
        self.slots = slots

    def need(self, scope: str) -> None:
        """Raise a GraphQL error unless the caller has ``scope``."""
        try:
            require(self.config, self.principal, scope)  # type: ignore[arg-type]
        except AuthError as exc:
            raise PermissionError(str(exc)) from exc


@strawberry.enum
class Direction(Enum):
    """Which way to walk lineage."""

    UPSTREAM = "upstream"
    DOWNSTREAM = "downstream"
    BOTH = "both"


@strawberry.type
class HealthType:
    """Health of an asset."""

    status: str
    signals: JSON
    checked_at: float | None


@strawberry.type
class EdgeType:
    """A lineage edge with its provenance."""

    upstream: str
    downstream: str
    relation: str
    run_id: str | None
    task_id: str | None
    agent: str | None


@strawberry.type
class AssetType:
    """An asset of the catalog."""

    id: str
    type: str
    name: str
    namespace: str
    owner: str
    tags: list[str]
    sensitivity: str
    health: HealthType
    metadata: JSON
    source: str | None
    checksum: str | None
    discovered_at: float | None
    updated_at: float | None

    @strawberry.field
    async def lineage(
        self, info: Info[Context, None], direction: Direction = Direction.BOTH, depth: int = 1
    ) -> LineageType:
        """Lineage of this asset (same rules as ``Query.lineage``)."""
        return await _lineage(info, self.id, direction, depth)


@strawberry.type
class LineageType:
    """Assets and edges reachable from ``root``."""

    root: str
    nodes: list[AssetType]
    edges: list[EdgeType]


@strawberry.type
class AssetPage:
    """A page of assets; pass ``next_cursor`` as ``after`` for the next."""

    items: list[AssetType]
    next_cursor: str | None


@strawberry.type
class Count:
    """How many assets have ``key``."""

    key: str
    count: int


def _counts(d: dict[str, int]) -> list[Count]:
    return [Count(key=k, count=v) for k, v in sorted(d.items())]


@strawberry.type
class StatsType:
    """Counts of the catalog."""

    assets: int
    edges: int
    by_type: list[Count]
    by_health: list[Count]
    by_namespace: list[Count]
    by_owner: list[Count]


@strawberry.type
class Change:
    """One change of the catalog, as published."""

    op: str
    id: str | None
    ts: float
    data: JSON


def to_type(a: Asset) -> AssetType:
    """Pydantic asset to GraphQL type."""
    h = a.health
    return AssetType(
        id=a.id,
        type=a.type,
        name=a.name,
        namespace=a.namespace,
        owner=a.owner,
        tags=a.tags,
        sensitivity=a.sensitivity.value,
        health=HealthType(status=h.status.value, signals=cast(JSON, h.signals), checked_at=h.checked_at),
        metadata=cast(JSON, a.metadata),
        source=a.source,
        checksum=a.checksum,
        discovered_at=a.discovered_at,
        updated_at=a.updated_at,
    )


def _edge(e: LineageEdge) -> EdgeType:
    return EdgeType(
        upstream=e.upstream,
        downstream=e.downstream,
        relation=e.relation,
        run_id=e.run_id,
        task_id=e.task_id,
        agent=e.agent,
    )


async def _lineage(info: Info[Context, None], asset_id: str, direction: Direction, depth: int) -> LineageType:
    ctx = info.context
    ctx.need("read")
    if not 1 <= depth <= ctx.config.max_depth:
        raise ValueError(f"depth must be between 1 and {ctx.config.max_depth}")
    try:
        found = await ctx.store.lineage(asset_id, direction=direction.value, depth=depth)
    except AssetNotFound as exc:
        raise ValueError(str(exc)) from exc
    return LineageType(root=found.root, nodes=[to_type(n) for n in found.nodes], edges=[_edge(e) for e in found.edges])


@strawberry.type
class Query:
    """Reads."""

    @strawberry.field
    async def asset(self, info: Info[Context, None], id: str) -> AssetType | None:
        """One asset by id, or null."""
        info.context.need("read")
        found = await info.context.store.get(id)
        return to_type(found) if found else None

    @strawberry.field
    async def assets(
        self,
        info: Info[Context, None],
        type: str | None = None,
        owner: str | None = None,
        namespace: str | None = None,
        tag: str | None = None,
        health: str | None = None,
        q: str | None = None,
        after: str | None = None,
        first: int = 50,
    ) -> AssetPage:
        """Assets matching every filter, ordered by id, after the cursor ``after``."""
        ctx = info.context
        ctx.need("read")
        if not 1 <= first <= ctx.config.max_limit:
            raise ValueError(f"first must be between 1 and {ctx.config.max_limit}")
        given = {"type": type, "owner": owner, "namespace": namespace, "tag": tag, "health": health}
        page = await ctx.store.list_assets({k: v for k, v in given.items() if v}, q=q, cursor=after, limit=first)
        return AssetPage(items=[to_type(a) for a in page.items], next_cursor=page.next_cursor)

    @strawberry.field
    async def search(self, info: Info[Context, None], q: str, limit: int = 20) -> list[AssetType]:
        """Assets having every word of ``q``."""
        ctx = info.context
        ctx.need("read")
        if not 1 <= limit <= ctx.config.max_limit:
            raise ValueError(f"limit must be between 1 and {ctx.config.max_limit}")
        return [to_type(a) for a in await ctx.store.search(q, limit=limit)]

    @strawberry.field
    async def lineage(
        self, info: Info[Context, None], id: str, direction: Direction = Direction.BOTH, depth: int = 1
    ) -> LineageType:
        """Assets upstream, downstream or both of ``id``, to ``depth`` hops."""
        return await _lineage(info, id, direction, depth)

    @strawberry.field
    async def stats(self, info: Info[Context, None]) -> StatsType:
        """Counts of assets and edges."""
        info.context.need("read")
        s = await info.context.store.stats()
        return StatsType(
            assets=s.assets,
            edges=s.edges,
            by_type=_counts(s.by_type),
            by_health=_counts(s.by_health),
            by_namespace=_counts(s.by_namespace),
            by_owner=_counts(s.by_owner),
        )


@strawberry.type
class Mutation:
    """Writes; every one needs the ``write`` scope."""

    @strawberry.mutation
    async def upsert_asset(self, info: Info[Context, None], asset: JSON) -> AssetType:
        """Create or replace an asset given as a JSON object (validated like the REST body)."""
        ctx = info.context
        ctx.need("write")
        try:
            model = Asset.model_validate(asset)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ValueError(f"asset.{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from exc
        await ctx.store.upsert(model)
        stored = await ctx.store.get(model.id)
        assert stored is not None
        return to_type(stored)

    @strawberry.mutation
    async def delete_asset(self, info: Info[Context, None], id: str) -> bool:
        """Delete an asset and its lineage; false when it did not exist."""
        info.context.need("write")
        return await info.context.store.delete(id)


@strawberry.type
class Subscription:
    """Live changes."""

    @strawberry.subscription
    async def changes(self, info: Info[Context, None]) -> AsyncGenerator[Change, None]:
        """Every catalog change as it is published."""
        ctx = info.context
        ctx.need("read")
        if not ctx.slots.take():
            raise ValueError(f"too many open streams of changes ({ctx.slots.limit}); try again later")
        changes = listen(ctx.redis, CatalogKeys(ctx.config.prefix).channel)
        try:
            async for raw in changes:
                if raw is not None:
                    data = json.loads(raw)
                    yield Change(op=data.get("op", ""), id=data.get("id"), ts=float(data.get("ts", 0)), data=data)
        finally:
            ctx.slots.give_back()
            await changes.aclose()


def build_schema(config: CatalogConfig) -> strawberry.Schema:
    """The schema with the limits of ``config``: tokens (before parsing), depth, aliases and worst-case cost."""
    return strawberry.Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=[
            lambda: MaxTokensLimiter(max_token_count=config.max_query_tokens),
            lambda: QueryDepthLimiter(max_depth=config.max_query_depth),
            lambda: MaxAliasesLimiter(max_alias_count=config.max_query_aliases),
            lambda: AddValidationRules([cost_rule(config)]),
        ],
    )


def graphql_router(config: CatalogConfig) -> GraphQLRouter[Context, None]:
    """The ``/graphql`` router; authentication happens when the context is built."""

    async def context(connection: HTTPConnection) -> Context:
        # HTTPConnection covers both plain requests and the websocket of a subscription
        principal = identify(config, connection.headers.get("authorization"))
        require(config, principal, "read")  # like REST: no token (with reads closed) is a 401, not a 200
        state = connection.app.state
        return Context(state.store, principal, config, state.events_redis, state.slots)

    return _OfflineGraphiQL(
        build_schema(config),
        context_getter=context,
        subscription_protocols=[GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL],
    )


class _OfflineGraphiQL(GraphQLRouter[Context, None]):
    """The router with a GraphiQL page whose scripts the catalog serves itself (``static/graphiql``), not a CDN."""

    async def render_graphql_ide(self, request: Request) -> HTMLResponse:
        return HTMLResponse((files("cortex.catalog") / "static" / "graphiql" / "index.html").read_text("utf-8"))
