"""Which model a ``CORTEX_MODEL=provider:model`` names, built with its key from the environment only.

- ``openai:<model>``: the OpenAI API, or any OpenAI-compatible endpoint with ``OPENAI_BASE_URL`` (Ollama, vLLM,
  a llama.cpp server); key ``OPENAI_API_KEY`` (a local server may not need one).
- ``anthropic:<model>``: key ``ANTHROPIC_API_KEY``.
- ``script:<file.json>``: the deterministic scripted model shipped with Cortex (``agents/scripted.py``).
- ``function:<module>:<callable>``: a pydantic-ai ``FunctionModel`` driven by that function.

``CORTEX_MODEL_REQUESTS=local-only`` (set by the test suite) refuses every endpoint that is not on this machine,
so no test can reach a paid API.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from pydantic_ai.models import Model

from cortex.errors import ModelUnavailable

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})

PROVIDER_MODULES = {
    "openai": ("pydantic_ai.models.openai", "pydantic_ai.providers.openai"),
    "anthropic": ("pydantic_ai.models.anthropic", "pydantic_ai.providers.anthropic"),
    "function": ("pydantic_ai.models.function",),
    "script": ("cortex.agents.scripted",),
}
"""What ``build_model`` imports for each provider (the OpenAI SDK alone takes over a second)."""


def _import_all(names: tuple[str, ...]) -> None:
    for name in names:
        with contextlib.suppress(ImportError):  # build_model says what is missing, in its own words
            importlib.import_module(name)


async def load_provider(spec: str) -> None:
    """Import what ``build_model(spec)`` needs in a thread, so that a worker's event loop (and its heartbeat)
    keeps running meanwhile."""
    await asyncio.to_thread(_import_all, PROVIDER_MODULES.get(spec.partition(":")[0], ()))


def _guard(url: str, env: Mapping[str, str]) -> None:
    if env.get("CORTEX_MODEL_REQUESTS") == "local-only" and urlsplit(url).hostname not in LOOPBACK:
        raise ModelUnavailable(f"model requests to {url} are blocked (CORTEX_MODEL_REQUESTS=local-only)")


def build_model(spec: str, env: Mapping[str, str], *, script_key: str = "") -> Model:
    """The pydantic-ai model for ``spec``; ``script_key`` picks the script of a scripted model (the task kind)."""
    provider, _, name = spec.partition(":")
    if not name:
        raise ModelUnavailable(f"CORTEX_MODEL={spec!r} is not provider:model (e.g. openai:gpt-4o-mini)")
    if provider == "script":  # script:FILE, or script:FILE#KEY to pick another script than the task kind's
        from cortex.agents.scripted import ScriptedModel

        file, _, key = name.partition("#")
        return ScriptedModel.from_file(Path(file), key or script_key)
    if provider == "function":  # function:package.module:callable, a FunctionModel function (tests, experiments)
        from pydantic_ai.models.function import FunctionModel

        module, _, attr = name.rpartition(":")
        try:
            fn = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError, ValueError) as exc:
            raise ModelUnavailable(f"CORTEX_MODEL={spec!r}: cannot import {name}: {exc}") from exc
        return FunctionModel(fn, model_name=spec)
    if provider == "openai":
        from pydantic_ai.models.openai import OpenAIChatModel
        from pydantic_ai.providers.openai import OpenAIProvider

        base_url = env.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        _guard(base_url, env)
        openai_key = env.get("OPENAI_API_KEY")
        if not openai_key and urlsplit(base_url).hostname not in LOOPBACK:
            raise ModelUnavailable("OPENAI_API_KEY is not set (needed for openai: models)")
        return OpenAIChatModel(name, provider=OpenAIProvider(base_url=base_url, api_key=openai_key or "not-needed"))
    if provider == "anthropic":
        from pydantic_ai.models.anthropic import AnthropicModel
        from pydantic_ai.providers.anthropic import AnthropicProvider

        base_url = env.get("ANTHROPIC_BASE_URL") or "https://api.anthropic.com"
        _guard(base_url, env)
        if not env.get("ANTHROPIC_API_KEY"):
            raise ModelUnavailable("ANTHROPIC_API_KEY is not set (needed for anthropic: models)")
        return AnthropicModel(name, provider=AnthropicProvider(api_key=env["ANTHROPIC_API_KEY"], base_url=base_url))
    raise ModelUnavailable(
        f"unknown model provider {provider!r} in CORTEX_MODEL; use openai, anthropic, script or function"
    )
