"""A small HTTP server that speaks the OpenAI chat-completions protocol, for testing ``CORTEX_MODEL=openai:...``
against a real socket and a real client library instead of a paid API. It answers from a script of turns (the
format of ``agents/scripted.py``), picked by a phrase of the agent's instructions; the n-th answer of a
conversation is the n-th turn. It reports fixed token usage per answer, so a test can check the ledger's sums."""

from __future__ import annotations

import json
import threading
from http.server import ThreadingHTTPServer
from typing import Any

from .jsonhttp import JSONHandler

PROMPT_TOKENS = 120
COMPLETION_TOKENS = 30


class OpenAICompatibleServer:
    """``POST /v1/chat/completions`` from ``scripts``: {phrase in the system message: [turn, ...]}."""

    def __init__(self, scripts: dict[str, list[dict[str, Any]]]) -> None:
        self.scripts = scripts
        self.requests: list[dict[str, Any]] = []
        self.answered = 0
        server = self

        class Handler(JSONHandler):
            def do_POST(self) -> None:
                body = self.body()
                server.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
                self.reply(*(server.answer(body) if self.path == "/v1/chat/completions" else (404, {"error": {}})))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        system = " ".join(str(m.get("content")) for m in body["messages"] if m["role"] in ("system", "developer"))
        turns = next((t for phrase, t in self.scripts.items() if phrase in system), None)
        n = sum(1 for m in body["messages"] if m["role"] == "assistant")
        if turns is None or n >= len(turns):
            return 400, {"error": {"message": "no scripted turn", "type": "invalid_request_error"}}
        turn = turns[n]
        message: dict[str, Any] = {"role": "assistant", "content": None}
        if "text" in turn:
            message["content"] = turn["text"]
        else:
            name = turn.get("tool") or next(
                t["function"]["name"] for t in body["tools"] if "final" in t["function"]["name"]
            )
            args = turn.get("args", turn.get("output", {}))
            message["tool_calls"] = [
                {"id": f"call_{n}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
            ]
        self.answered += 1
        usage = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS}
        return 200, {
            "id": f"chatcmpl-{self.answered}",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [
                {"index": 0, "message": message, "finish_reason": "tool_calls" if "tool_calls" in message else "stop"}
            ],
            "usage": {**usage, "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS},
        }

    def __enter__(self) -> OpenAICompatibleServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
