"""Incremental discovery: walk the fleet, register assets and lineage, skip what did not change.

Each file of interest (manifests, Dockerfiles, Kubernetes YAML, workflows) is checksummed; an unchanged
checksum skips the file, a changed one re-registers what it produces, a vanished one marks its assets
``removed`` (kept for lineage and history). A second discovery over an unchanged fleet writes nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from cortex.catalog.store import CatalogStore
from cortex.errors import ManifestUnreadable
from cortex.files import walk_files
from cortex.models.assets import Asset, Health, HealthStatus, LineageEdge
from cortex.repo import (
    CODEOWNERS_PLACES,
    discover_targets,
    docker_images,
    is_dockerfile,
    k8s_objects,
    languages,
    manifest_readers,
    ownership,
)

MANIFESTS = {"pyproject.toml", "package.json", "package-lock.json", "go.mod", "Cargo.lock"}


@dataclass
class Provenance:
    """Who recorded the edges (a run's task and agent, or a person's CLI call)."""

    run_id: str | None = None
    task_id: str | None = None
    agent: str | None = "cortex catalog discover"


@dataclass
class Produced:
    """Assets and edges one file (or a repository as a whole) yields."""

    assets: list[Asset] = field(default_factory=list)
    edges: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass
class DiscoveryResult:
    """What a discovery pass did (counts of writes, so ``unchanged fleet -> all zero`` is checkable)."""

    files_seen: int = 0
    files_skipped: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    edges_added: int = 0

    @property
    def writes(self) -> int:
        """Store writes made."""
        return self.created + self.updated + self.removed + self.edges_added


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._:/@+-]", "-", text)[:200]


def interesting(repo: Path) -> list[Path]:
    """Files discovery reads in a repository: manifests, Dockerfiles, and YAML outside the test folders."""
    out = []
    for path in walk_files(repo):
        top = path.relative_to(repo).parts[0]
        manifest = path.name in MANIFESTS or (path.name.startswith("requirements") and path.suffix == ".txt")
        manifest = manifest or str(path.relative_to(repo)) in CODEOWNERS_PLACES
        dockerfile = is_dockerfile(path)
        yaml_file = path.suffix in (".yml", ".yaml") and top not in ("tests", "test")
        if manifest or dockerfile or yaml_file:
            out.append(path)
    return out


def _last_commit_age_days(repo: Path) -> float | None:
    if not (repo / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), "log", "-1", "--format=%ct"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return round((time.time() - int(out)) / 86400, 1) if out.isdigit() else None


def repository_asset(repo: Path, checksum: str, remote: str | None = None) -> Asset:
    """The repository itself: its owner, system and lifecycle (catalog-info.yaml, CODEOWNERS) and health
    signals (tests present, last commit age); its source is its git remote when it came from one."""
    owned = ownership(repo)
    has_tests = (repo / "tests").is_dir() or (repo / "test").is_dir()
    age = _last_commit_age_days(repo)
    signals: dict[str, object] = {"tests_present": has_tests}
    if age is not None:
        signals["last_commit_age_days"] = age
    status = HealthStatus.healthy if has_tests else HealthStatus.degraded
    tags = sorted({lang.lower() for lang in languages(repo) if lang in ("Python", "JavaScript", "TypeScript", "Go")})
    meta = {k: owned[k] for k in ("system", "lifecycle", "owners", "sources") if owned[k]}
    return Asset(
        id=f"repo:{_slug(repo.name)}",
        type="repository",
        name=repo.name,
        owner=owned["owner"] or "unowned",
        tags=tags,
        source=remote or str(repo),
        checksum=checksum,
        health=Health(status=status, signals=signals),
        metadata={**({"ownership": meta} if meta else {}), **({"remote": remote} if remote else {})},
    )


def _ownership(repo: Path, repo_id: str, rel: str) -> Produced:
    """Owner groups and system of a catalog-info.yaml or CODEOWNERS file: ``owned_by`` and ``part_of`` edges."""
    out = Produced()
    owned = ownership(repo)
    groups = [owned["owner"]] if rel == "catalog-info.yaml" and owned["owner"] else []
    groups += [o.split("/", 1)[-1] for o in owned["owners"]] if rel != "catalog-info.yaml" else []
    for group in dict.fromkeys(groups):
        gid = f"group:{_slug(group)}"
        out.assets.append(Asset(id=gid, type="group", name=group, owner=group, tags=["team"]))
        out.edges.append((repo_id, gid, "owned_by"))
    if rel == "catalog-info.yaml" and owned["system"]:
        sid = f"system:{_slug(owned['system'])}"
        out.assets.append(Asset(id=sid, type="system", name=owned["system"], tags=["system"]))
        out.edges.append((repo_id, sid, "part_of"))
    return out


def produce(repo: Path, path: Path) -> Produced:
    """Assets and edges of one file of a repository."""
    out = Produced()
    repo_id = f"repo:{_slug(repo.name)}"
    rel = str(path.relative_to(repo))
    if rel == "catalog-info.yaml" or rel in CODEOWNERS_PLACES:
        return _ownership(repo, repo_id, rel)
    if path.name in MANIFESTS or path.name.startswith("requirements"):
        if path.name == "package-lock.json":
            return out  # versions come in through package.json's reading of the lock file
        read = dict(manifest_readers(repo)).get(path)
        try:
            pkgs = read(repo, path, path.read_text(encoding="utf-8"))[0] if read is not None else []
        except (ManifestUnreadable, OSError, UnicodeDecodeError):
            return out  # nothing to register; the inventory task reports the file as a finding
        for p in pkgs:
            pid = f"pkg:{p['ecosystem'].lower()}:{_slug(p['name'])}"
            out.assets.append(
                Asset(
                    id=pid,
                    type="package",
                    name=p["name"],
                    tags=[p["ecosystem"].lower()],
                    metadata={"ecosystem": p["ecosystem"]},
                )
            )
            out.edges.append((pid, repo_id, "dependency_of"))
    elif path.name.startswith("Dockerfile"):
        for image in docker_images(path):
            iid = f"image:{_slug(image)}"
            out.assets.append(Asset(id=iid, type="image", name=image, tags=["base-image"], source=f"{repo}/{rel}"))
            out.edges.append((iid, repo_id, "base_image_of"))
    elif rel.startswith(".github/workflows/"):
        wid = f"workflow:{_slug(repo.name)}/{_slug(path.name)}"
        out.assets.append(Asset(id=wid, type="workflow", name=path.name, tags=["github-actions"], source=str(path)))
        out.edges.append((repo_id, wid, "defines"))
    else:
        for obj in k8s_objects(path):
            ns = _slug(str(obj["namespace"]).lower())
            kind = str(obj["kind"]).lower()
            oid = f"{'service' if kind == 'service' else 'workload'}:{ns}/{kind}/{_slug(str(obj['name']))}"
            out.assets.append(
                Asset(
                    id=oid,
                    type="service" if kind == "service" else "workload",
                    name=str(obj["name"]),
                    namespace=ns,
                    tags=[kind],
                    source=f"{repo}/{rel}",
                    metadata={"kind": obj["kind"]},
                )
            )
            out.edges.append((repo_id, oid, "deploys"))
            for image in obj["images"]:
                iid = f"image:{_slug(image)}"
                out.assets.append(Asset(id=iid, type="image", name=image, tags=["deployed"]))
                out.edges.append((iid, oid, "runs_in"))
                if image.rsplit("/", 1)[-1].split(":")[0] == repo.name:
                    out.edges.append((repo_id, iid, "builds"))  # the image is named after the repository
    return out


def repository_records(repo: Path, remote: str | None = None) -> Produced:
    """Everything one repository yields (the repository, then each file's assets and edges), not incremental:
    what the inventory master's discovery task records in the catalog through the client."""
    files = interesting(repo)
    sums = sorted((str(p), _sha(p)) for p in files)
    digest = hashlib.sha256(json.dumps(sums).encode()).hexdigest()
    out = Produced(assets=[repository_asset(repo, digest, remote)])
    for path in files:
        part = produce(repo, path)
        out.assets += part.assets
        out.edges += part.edges
    return out


async def discover(
    store: CatalogStore, roots: list[Path], prov: Provenance | None = None, remotes: dict[str, str] | None = None
) -> DiscoveryResult:
    """One incremental pass over every repository under ``roots``; ``remotes`` maps a checkout's directory to the
    URL (redacted) it was cloned from, which the repository's asset records."""
    prov = prov or Provenance()
    result = DiscoveryResult()
    redis, keys = store.redis, store.keys
    for root in roots:
        repos = [Path(t.path) for t in discover_targets(root)]
        present: set[str] = set()
        for repo in repos:
            files = await asyncio.to_thread(interesting, repo)
            sums = {str(p): await asyncio.to_thread(_sha, p) for p in files}
            present |= set(sums)
            repo_sum = hashlib.sha256(json.dumps(sorted(sums.items())).encode()).hexdigest()
            present.add(f"repo:{repo}")
            known = await redis.hmget(keys.checksums, [f"repo:{repo}", *sums])
            result.files_seen += len(files)
            work: list[tuple[str, str, Produced]] = []
            if known[0] != repo_sum:
                asset = repository_asset(repo, repo_sum, (remotes or {}).get(str(repo)))
                work.append((f"repo:{repo}", repo_sum, Produced(assets=[asset])))
            for (path, digest), old in zip(sums.items(), known[1:], strict=True):
                if old == digest:
                    result.files_skipped += 1
                    continue
                work.append((path, digest, await asyncio.to_thread(produce, repo, Path(path))))
            for source, digest, produced in work:
                await _apply(store, produced, result, prov)
                await _retire(store, source, produced, result)
                await redis.hset(keys.checksums, source, digest)
        await _remove_vanished(store, root.resolve(), present, result)
    await redis.set(keys.last_discovery, repr(time.time()))
    return result


async def _apply(store: CatalogStore, produced: Produced, result: DiscoveryResult, prov: Provenance) -> None:
    for asset in produced.assets:
        outcome = await store.upsert(asset)
        setattr(result, outcome, getattr(result, outcome) + 1)
    for up, down, relation in produced.edges:
        edge = LineageEdge(
            upstream=up, downstream=down, relation=relation, run_id=prov.run_id, task_id=prov.task_id, agent=prov.agent
        )
        if await store.link(edge):
            result.edges_added += 1


def _record(produced: Produced) -> str:
    return json.dumps({"assets": sorted({a.id for a in produced.assets}), "edges": sorted(map(list, produced.edges))})


async def _retire(store: CatalogStore, source: str, now: Produced, result: DiscoveryResult) -> None:
    """What ``source`` produced before and no longer does: drop its edges, mark assets no source yields removed."""
    redis, keys = store.redis, store.keys
    before = await redis.hget(keys.sources, source)
    await redis.hset(keys.sources, source, _record(now))
    if before is None:
        return
    old = json.loads(before)
    for up, down, relation in {tuple(e) for e in old["edges"]} - set(now.edges):
        await store.unlink(up, down, relation)
    await _mark_removed(store, set(old["assets"]) - {a.id for a in now.assets}, source, result)


async def _mark_removed(store: CatalogStore, ids: set[str], source: str, result: DiscoveryResult) -> None:
    """Mark ``ids`` removed unless another known source still produces them."""
    if not ids:
        return
    still = {a for v in (await store.redis.hgetall(store.keys.sources)).values() for a in json.loads(v)["assets"]}
    for asset_id in sorted(ids - still):
        asset = await store.get(asset_id)
        if asset is None or asset.health.status is HealthStatus.removed:
            continue
        health = Health(status=HealthStatus.removed, signals={"vanished_from": source}, checked_at=time.time())
        await store.upsert(asset.model_copy(update={"health": health}))
        result.removed += 1


async def _remove_vanished(store: CatalogStore, root: Path, present: set[str], result: DiscoveryResult) -> None:
    """Files known under ``root`` that are gone: drop their edges and mark what only they produced removed."""
    redis, keys = store.redis, store.keys
    known = await redis.hgetall(keys.sources)
    for source, record in known.items():
        if source in present or not source.removeprefix("repo:").startswith(str(root)):
            continue
        old = json.loads(record)
        await redis.hdel(keys.sources, source)
        await redis.hdel(keys.checksums, source)
        for up, down, relation in old["edges"]:
            await store.unlink(up, down, relation)
        await _mark_removed(store, set(old["assets"]), source, result)
