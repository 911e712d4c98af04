"""Budget enforcement around any model: no call without a reservation in the run's ledger.

Before each call the model reserves an upper bound at run, master and worker level at once (the prompt's size
estimated from its characters, plus the full output limit); after it, it commits the usage the provider reported
and releases the rest. A refused reservation raises ``BudgetExceeded``. When the master's remaining budget falls
below its policy's threshold, the policy degrades the work (cheaper model, smaller output, skip optional tasks),
and each step is recorded for the report.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis.asyncio as aredis
from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models import Model, ModelRequestParameters
from pydantic_ai.models.wrapper import WrapperModel
from pydantic_ai.settings import ModelSettings

from cortex.coord.keys import RunKeys
from cortex.coord.ledger import Ledger
from cortex.errors import BudgetExceeded, TaskSkipped
from cortex.models.roster import Degradation
from cortex.models.state import LedgerAccount

CHARS_PER_TOKEN_BOUND = 3
"""Prompt tokens are estimated as characters / 3: tokenizers average about 4 characters a token on English and
code, so this errs high, as a reservation should. Usage above a reservation is still charged (``overrun``)."""


def estimate_prompt_tokens(messages: list[ModelMessage], params: ModelRequestParameters) -> int:
    """An upper estimate of the prompt's tokens: messages and tool definitions, by characters."""
    tools = [*params.function_tools, *params.output_tools]
    chars = sum(len(str(m)) for m in messages) + sum(len(json.dumps(t.parameters_json_schema)) for t in tools)
    return chars // CHARS_PER_TOKEN_BOUND + 16


class LedgerLike(Protocol):
    """What the budgeted model needs of a ledger (``coord.ledger.Ledger`` in a run, ``LocalLedger`` before one)."""

    async def reserve(self, reservation_id: str, tokens: int, *, master: str, worker: str | None = None) -> None: ...

    async def commit(self, reservation_id: str, used: int, *, master: str, worker: str | None = None) -> int: ...

    async def account(self, level: str) -> LedgerAccount: ...


class LocalLedger:
    """Accounts in this process, for model calls made before a run exists (planning assistance): the same rules
    as the Redis ledger (reserve at every level or none, commit the reported usage), without the sharing."""

    def __init__(self, allocations: dict[str, int]) -> None:
        self.accounts = {
            k: {"allocated": v, "used": 0, "reserved": 0, "released": 0, "overrun": 0} for k, v in allocations.items()
        }
        self.held: dict[str, tuple[int, list[str]]] = {}

    def _levels(self, master: str, worker: str | None) -> list[str]:
        return ["run", f"master:{master}", *([f"worker:{worker}"] if worker else [])]

    async def reserve(self, reservation_id: str, tokens: int, *, master: str, worker: str | None = None) -> None:
        """Hold ``tokens`` at every level or raise ``BudgetExceeded``."""
        levels = self._levels(master, worker)
        for level in levels:
            a = self.accounts.setdefault(level, {"allocated": 0, "used": 0, "reserved": 0, "released": 0, "overrun": 0})
            left = a["allocated"] - a["used"] - a["reserved"]
            if left < tokens:
                raise BudgetExceeded(level, tokens, left)
        for level in levels:
            self.accounts[level]["reserved"] += tokens
        self.held[reservation_id] = (tokens, levels)

    async def commit(self, reservation_id: str, used: int, *, master: str, worker: str | None = None) -> int:
        """Charge ``used`` and release the rest of the reservation."""
        held, levels = self.held.pop(reservation_id)
        for level in levels:
            a = self.accounts[level]
            a["reserved"] -= held
            a["used"] += used
            a["released"] += max(0, held - used)
            a["overrun"] += max(0, used - held)
        return max(0, held - used)

    async def account(self, level: str) -> LedgerAccount:
        """One level's figures."""
        return LedgerAccount(**self.accounts.get(level, {}))


@dataclass
class CallScope:
    """Who pays for a model call: the task, its master and worker, and the master's policy. ``redis`` is None
    for calls made before a run exists (their usage stays in ``calls``)."""

    redis: aredis.Redis | None
    keys: RunKeys
    task_id: str
    master: str
    worker: str | None
    """None for the coordinator's own calls (run and master levels only)."""
    optional: bool
    max_output_tokens: int
    policy: Degradation
    cheaper: Model | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)
    degraded: list[str] = field(default_factory=list)


class BudgetedModel(WrapperModel):
    """``wrapped``, with every request reserved and committed in the ledger of ``scope``."""

    def __init__(self, wrapped: Model, scope: CallScope, ledger: LedgerLike | None = None) -> None:
        super().__init__(wrapped)
        self.scope = scope
        if ledger is None:
            assert scope.redis is not None, "a run's model calls need the run's Redis ledger"
            ledger = Ledger(scope.redis, scope.keys)
        self.ledger: LedgerLike = ledger

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        """Reserve, call, commit what the provider reported (or nothing, when the call failed)."""
        s = self.scope
        max_out = await self._degrade(s.max_output_tokens)
        settings: ModelSettings = {**(model_settings or {}), "max_tokens": max_out}
        tokens = estimate_prompt_tokens(messages, model_request_parameters) + max_out
        rid = f"{s.task_id}@{s.worker}#{uuid.uuid4().hex[:8]}"
        await self.ledger.reserve(rid, tokens, master=s.master, worker=s.worker)  # BudgetExceeded: no call
        used = 0
        try:
            response = await self.wrapped.request(messages, settings, model_request_parameters)
            used = response.usage.input_tokens + response.usage.output_tokens
        finally:
            await self.ledger.commit(rid, used, master=s.master, worker=s.worker)
        call = {
            "model": self.wrapped.model_name,
            "input_tokens": response.usage.input_tokens,
            "output_tokens": response.usage.output_tokens,
            "reserved": tokens,
        }
        s.calls.append(call)
        if s.redis is None:
            return response
        pipe = s.redis.pipeline(transaction=False)
        pipe.hincrby(s.keys.model_usage, f"{s.master}|{call['model']}|input", call["input_tokens"])
        pipe.hincrby(s.keys.model_usage, f"{s.master}|{call['model']}|output", call["output_tokens"])
        pipe.hincrby(s.keys.model_usage, f"{s.master}|{call['model']}|calls", 1)
        spend = {"at": time.time(), "master": s.master, "worker": s.worker, "task": s.task_id, "tokens": used}
        pipe.rpush(s.keys.token_log, json.dumps(spend))
        await pipe.execute()
        return response

    async def _degrade(self, max_out: int) -> int:
        """Apply the master's policy when its remaining budget is below the threshold; the output limit to use."""
        s, p = self.scope, self.scope.policy
        account = await self.ledger.account(f"master:{s.master}")
        if not account.allocated:
            return max_out
        left = account.remaining / account.allocated
        if left >= p.below:
            return max_out
        why = f"master {s.master} has {left:.0%} of its budget left (policy: below {p.below:.0%})"
        if p.skip_optional and s.optional:
            await self._record("skipped optional task", why)
            raise TaskSkipped(f"budget low, optional task skipped: {why}")
        if p.model and s.cheaper is not None and self.wrapped is not s.cheaper:
            await self._record(f"switched to cheaper model {p.model}", why)
            self.wrapped = s.cheaper
        if p.max_output_tokens and max_out > p.max_output_tokens:
            await self._record(f"output limit {max_out} -> {p.max_output_tokens} tokens", why)
            return p.max_output_tokens
        return max_out

    async def _record(self, step: str, why: str) -> None:
        s = self.scope
        if step in s.degraded:
            return
        s.degraded.append(step)
        if s.redis is None:
            return
        entry = {"at": time.time(), "master": s.master, "task": s.task_id, "worker": s.worker, "step": step, "why": why}
        await s.redis.rpush(s.keys.degradations, json.dumps(entry))
