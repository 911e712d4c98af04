"""Per-target Python environments: a target's tests run with the target's declared dependencies, never with
Cortex's own.

``env_spec`` reads what the target declares (``uv.lock`` or ``poetry.lock`` when present, else
``pyproject.toml`` with its test extras and the ``requirements*.txt`` files); ``ensure_env`` builds a virtual
environment of exactly that with uv, cached under the state directory by a digest of the specification, and
reused until a dependency file changes. The test tools (pytest, coverage) come from Cortex's own installation as a
read-only overlay added after the environment's own packages (a ``.pth`` file): no network is needed for them,
and a target that declares its own pytest gets its own. The target's code runs from its tree (``src/`` and the
root on ``PYTHONPATH``), so nothing is built or written inside the repository.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import sys
import time
import tomllib
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import Requirement

from cortex.errors import TaskFailed
from cortex.files import regular_file
from cortex.toolset.builtin import run_argv

TOOLS = ("pytest", "coverage")
TEST_EXTRAS = ("test", "tests", "testing", "dev")
"""Optional-dependency groups of ``pyproject.toml`` that hold what a test suite needs."""
READY = ".cortex-ready"
NETWORK_WORDS = ("timed out", "error sending request", "failed to fetch", "connection", "dns", "network")


@dataclass
class EnvSpec:
    """What an environment for one target holds: requirement lines, where they came from, and a digest."""

    requirements: list[str]
    sources: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        """Digest of the interpreter, the requirements and the tools: the cache key of the environment."""
        tools = [f"{t}=={importlib.metadata.version(t)}" for t in TOOLS]
        blob = json.dumps([sys.version, sorted(self.requirements), tools], sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:24]


@dataclass
class Index:
    """Where the targets' dependencies come from: the default index (PyPI), another one, none, and local wheel
    directories (``--find-links``)."""

    url: str | None = None
    """``None``: uv's default; ``"none"``: no index at all (local wheels only)."""
    find_links: list[str] = field(default_factory=list)

    def args(self) -> list[str]:
        """uv's options for this index."""
        out = ["--no-index"] if self.url == "none" else ["--index-url", self.url] if self.url else []
        for link in self.find_links:
            out += ["--find-links", link]
        return out


def _requirement_lines(path: Path) -> tuple[list[str], list[str]]:
    """Requirement lines of a requirements file, and notes on the options it has that Cortex does not follow."""
    lines, notes = [], []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            notes.append(f"{path.name}: option {line.split()[0]} not followed (the target runs from its tree)")
            continue
        lines.append(line)
    return lines, notes


def _poetry_lock(path: Path) -> list[str] | None:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return None
    return [f"{p['name']}=={p['version']}" for p in data.get("package", []) if "name" in p and "version" in p]


async def _uv_export(uv: str, root: Path, timeout_s: float) -> list[str] | None:
    """The pinned requirements of ``uv.lock`` (all extras and groups, the project itself left out)."""
    argv = [
        uv,
        "export",
        "--frozen",
        "--no-hashes",
        "--no-emit-project",
        "--all-extras",
        "--format",
        "requirements-txt",
    ]
    code, out, _ = await run_argv(argv, str(root), timeout_s)
    if code != 0:
        return None
    return [line.strip() for line in out.splitlines() if line.strip() and not line.lstrip().startswith(("#", "-"))]


async def env_spec(root: Path, uv: str, timeout_s: float = 60) -> EnvSpec:
    """What ``root`` declares for running its tests. A lock file wins over loose specifiers."""
    note = ""
    if regular_file(root / "uv.lock"):  # noqa: ASYNC240  (one stat)
        pinned = await _uv_export(uv, root, timeout_s)
        if pinned is not None:
            return EnvSpec(pinned, ["uv.lock"])
        note = "uv.lock could not be exported (out of date with pyproject.toml?); read pyproject.toml instead"
    return _declared_spec(root, note)


def _declared_spec(root: Path, note: str) -> EnvSpec:
    if regular_file(root / "poetry.lock"):
        pinned = _poetry_lock(root / "poetry.lock")
        if pinned is not None:
            return EnvSpec(pinned, ["poetry.lock"])
        note = "poetry.lock does not parse; read pyproject.toml and requirements files instead"
    spec = EnvSpec([], [], [note] if note else [])
    pyproject = root / "pyproject.toml"
    if regular_file(pyproject):
        try:
            project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            spec.notes.append(f"pyproject.toml left out: it does not parse ({exc})")
            project = None
        if isinstance(project, dict):
            spec.requirements += [str(r) for r in project.get("dependencies", [])]
            extras = project.get("optional-dependencies", {})
            for name in TEST_EXTRAS:
                spec.requirements += [str(r) for r in extras.get(name, [])]
            spec.sources.append("pyproject.toml")
    for path in sorted(p for p in root.glob("requirements*.txt") if regular_file(p)):
        lines, notes = _requirement_lines(path)
        spec.requirements += lines
        spec.notes += notes
        spec.sources.append(path.name)
    return spec


def _dist_closure(names: tuple[str, ...]) -> list[importlib.metadata.Distribution]:
    """The installed distributions ``names`` need here, themselves included (markers evaluated, no extras)."""
    seen: dict[str, importlib.metadata.Distribution] = {}
    todo = list(names)
    while todo:
        name = todo.pop()
        key = name.lower().replace("_", "-")
        if key in seen:
            continue
        dist = importlib.metadata.distribution(name)
        seen[key] = dist
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):  # this interpreter, no extra
                todo.append(req.name)
    return [seen[k] for k in sorted(seen)]


def tooling_overlay(envs_dir: Path) -> Path:
    """A directory of links to the test tools and what they need, from Cortex's own installation."""
    dists = _dist_closure(TOOLS)
    digest = hashlib.sha256(json.dumps([(d.metadata["Name"], d.version) for d in dists]).encode()).hexdigest()[:16]
    overlay = envs_dir / f"tooling-{digest}"
    if (overlay / READY).exists():
        return overlay
    staging = envs_dir / f".tooling-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    for dist in dists:
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in sorted(tops):
            source = Path(str(dist.locate_file(top)))
            if source.exists() and not (staging / top).exists():
                (staging / top).symlink_to(source)
    (staging / READY).write_text("\n".join(f"{d.metadata['Name']}=={d.version}" for d in dists) + "\n")
    try:
        staging.rename(overlay)
    except OSError:  # another worker made it first: the same links
        shutil.rmtree(staging, ignore_errors=True)
    return overlay


@dataclass
class Env:
    """A built environment: its interpreter, its cache key, whether it was reused, how long it took to build."""

    python: Path
    key: str
    reused: bool
    build_s: float


def resolver_message(text: str) -> str:
    """The lines of uv's output that say what went wrong (``error:``, ``cause:``, ``hint:``), else its tail."""
    keep = [ln.strip() for ln in text.splitlines() if ln.strip().startswith(("error:", "cause:", "hint:", "×"))]
    return " ".join(keep)[:1200] if keep else text.strip()[-600:]


def _site_packages(env: Path) -> Path:
    found = sorted(env.glob("lib/python*/site-packages"))
    if not found:
        raise TaskFailed(f"the environment {env} has no site-packages", retryable=False)
    return found[0]


async def ensure_env(spec: EnvSpec, envs_dir: Path, uv: str, index: Index, *, repository: str, timeout_s: float) -> Env:
    """The environment of ``spec``: reused when built before, else built (in a staging directory renamed into
    place when ready, so a half-built environment is never used). Installation failures fail the task with the
    resolver's message; only network trouble is worth a retry."""
    key = spec.key
    final = envs_dir / key
    if (final / READY).exists():
        return Env(final / "bin" / "python", key, True, 0.0)
    started = time.monotonic()
    staging = envs_dir / f".building-{key}-{uuid.uuid4().hex[:8]}"
    staging.parent.mkdir(parents=True, exist_ok=True)
    try:
        code, out, err = await run_argv([uv, "venv", "--quiet", "--python", sys.executable, str(staging)], ".", 60)
        if code != 0:  # a uv killed by a signal may do better next time; any other failure will not
            raise TaskFailed(f"uv venv failed (exit {code}): {(err or out).strip()[-400:]}", retryable=code < 0)
        if spec.requirements:
            argv = [uv, "pip", "install", "--quiet", "--python", str(staging / "bin" / "python"), *index.args()]
            try:
                code, out, err = await run_argv([*argv, *spec.requirements], ".", timeout_s)
            except TimeoutError as exc:
                raise TaskFailed(f"installing {repository}'s dependencies timed out after {timeout_s:.0f} s") from exc
            if code != 0:
                message = resolver_message(err or out)
                retry = code < 0 or any(w in message.lower() for w in NETWORK_WORDS)
                raise TaskFailed(
                    f"installing {repository}'s dependencies ({', '.join(spec.sources)}) failed: {message}",
                    retryable=retry,
                )
        overlay = tooling_overlay(envs_dir)
        (_site_packages(staging) / "zz_cortex_tooling.pth").write_text(f"{overlay}\n")
        (staging / READY).write_text(json.dumps({"requirements": spec.requirements, "sources": spec.sources}))
        try:
            staging.rename(final)
        except OSError:  # built meanwhile by another worker: theirs is the same
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return Env(final / "bin" / "python", key, False, round(time.monotonic() - started, 3))


def target_environ(root: Path, env: Env) -> dict[str, str]:
    """The variables a target's test run needs: its tree on ``PYTHONPATH`` (``src/`` first), nothing of Cortex's
    own interpreter or user site-packages, no bytecode written into the tree."""
    paths = [str(root / "src")] if (root / "src").is_dir() else []
    return {
        "PYTHONPATH": os.pathsep.join([*paths, str(root)]),
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "VIRTUAL_ENV": str(env.python.parent.parent),
    }


def uv_binary() -> str:
    """uv, from the Python package Cortex depends on (or PATH)."""
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found is None:
            raise TaskFailed(
                "uv not found: it is a dependency of cortex (reinstall the project)", retryable=False
            ) from None
        return found
