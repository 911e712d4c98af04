"""The deterministic model shipped with Cortex, for tests and demos without a paid API.

A script is a JSON file: ``{"<task kind>": [turn, ...]}``. Each turn is what the model answers at that point of an
agent run: ``{"tool": name, "args": {...}}`` (a tool call), ``{"output": {...}}`` (the structured result) or
``{"text": "..."}``. The n-th answer of a run is the n-th turn, so the same script always does the same thing.
Token usage is the model's own count (characters / 4 of what it read and wrote), deterministic like the rest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.usage import RequestUsage

from cortex.errors import InputError, ScriptError
from cortex.roster.documents import parse_json, read_text


class ScriptedModel(FunctionModel):
    """Answers an agent run with the turns of one script."""

    def __init__(self, turns: list[dict[str, Any]], name: str = "scripted") -> None:
        self.turns = turns
        super().__init__(self._answer, model_name=f"script:{name}")

    @classmethod
    def from_file(cls, path: Path, key: str) -> ScriptedModel:
        """The turns under ``key`` in the script file ``path``."""
        try:
            script = parse_json(read_text(path, "model script"), str(path))
        except InputError as exc:
            raise ScriptError(str(exc)) from None
        if not isinstance(script, dict) or not all(isinstance(v, list) for v in script.values()):
            raise ScriptError(f"model script {path}: expected an object of lists of turns, keyed by task kind")
        if key not in script:
            raise ScriptError(f"model script {path} has no turns for {key!r} (it has: {', '.join(sorted(script))})")
        return cls(list(script[key]), name=f"{path.name}#{key}")

    def _answer(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        n = sum(1 for m in messages if isinstance(m, ModelResponse))
        if n >= len(self.turns):
            raise ScriptError(f"model script ran out of turns after {n}")
        turn = self.turns[n]
        if "tool" in turn:
            part: ToolCallPart | TextPart = ToolCallPart(turn["tool"], turn.get("args", {}))
        elif "output" in turn:
            part = ToolCallPart(info.output_tools[0].name if info.output_tools else "final_result", turn["output"])
        else:
            part = TextPart(str(turn["text"]))
        read = sum(len(str(m)) for m in messages)
        usage = RequestUsage(input_tokens=read // 4 + 1, output_tokens=len(json.dumps(turn)) // 4 + 1)
        return ModelResponse(parts=[part], usage=usage, model_name=self.model_name)
