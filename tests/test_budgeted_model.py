"""The budget around model calls, against a real Redis ledger and the scripted model: reservation before every
call, degradation steps in the master's policy, and no call at all when the ledger refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis.asyncio as aredis
from pydantic import BaseModel
from pydantic_ai import Agent

from cortex.agents.budget import BudgetedModel, CallScope
from cortex.agents.scripted import ScriptedModel
from cortex.coord.keys import RunKeys
from cortex.coord.ledger import Ledger
from cortex.errors import BudgetExceeded, TaskSkipped
from cortex.models.roster import Degradation

KEYS = RunKeys("budget-test")
TURNS = [{"tool": "look", "args": {}}, {"output": {"answer": "done"}}]


class Answer(BaseModel):
    answer: str


def look() -> str:
    """Look at something."""
    return "something " * 50


async def setup(redis: aredis.Redis, policy: Degradation, *, optional: bool = False, pre_used: int = 0) -> CallScope:
    ledger = Ledger(redis, KEYS)
    await ledger.allocate({"run": 10_000, "master:m": 10_000, "worker:w": 10_000})
    if pre_used:
        await ledger.reserve("earlier", pre_used, master="m", worker="w")
        await ledger.commit("earlier", pre_used, master="m", worker="w")
    cheaper = ScriptedModel(TURNS, name="cheap") if policy.model else None
    return CallScope(redis, KEYS, "t1", "m", "w", optional, 500, policy, cheaper)


async def test_a_low_budget_switches_to_the_cheaper_model_and_lowers_the_output_limit(redis: aredis.Redis) -> None:
    scope = await setup(redis, Degradation(below=0.5, model="script:cheap", max_output_tokens=100), pre_used=5_001)
    agent = Agent(BudgetedModel(ScriptedModel(TURNS, name="main"), scope), output_type=Answer, tools=[look])
    assert (await agent.run("go")).output.answer == "done"
    assert [c["model"] for c in scope.calls] == ["script:cheap", "script:cheap"]
    assert all(c["reserved"] < 5_000 for c in scope.calls)
    recorded = [json.loads(x)["step"] for x in await redis.lrange(KEYS.degradations, 0, -1)]
    assert recorded == ["switched to cheaper model script:cheap", "output limit 500 -> 100 tokens"]
    account = await Ledger(redis, KEYS).account("master:m")
    spent = sum(c["input_tokens"] + c["output_tokens"] for c in scope.calls)
    assert (account.used, account.reserved) == (5_001 + spent, 0)


async def test_an_optional_task_is_skipped_when_the_budget_is_low(redis: aredis.Redis) -> None:
    scope = await setup(redis, Degradation(below=0.5, skip_optional=True), optional=True, pre_used=6_000)
    agent = Agent(BudgetedModel(ScriptedModel(TURNS), scope), output_type=Answer, tools=[look])
    with pytest.raises(TaskSkipped, match="budget low, optional task skipped: master m has 40% of its budget left"):
        await agent.run("go")
    assert scope.calls == []


async def test_a_refused_reservation_makes_no_call(redis: aredis.Redis) -> None:
    scope = await setup(redis, Degradation(below=0.01), pre_used=9_900)
    agent = Agent(BudgetedModel(ScriptedModel(TURNS), scope), output_type=Answer, tools=[look])
    with pytest.raises(BudgetExceeded, match="exceeds"):
        await agent.run("go")
    assert scope.calls == []
    account = await Ledger(redis, KEYS).account("master:m")
    assert (account.used, account.reserved) == (9_900, 0)


async def test_two_agents_writing_the_same_file_take_turns(redis: aredis.Redis, tmp_path: Path) -> None:
    import asyncio

    from cortex.agents.workspace import Workspace
    from cortex.coord.keys import lock_key
    from cortex.models.task import Estimate, Task
    from cortex.toolset.context import TaskContext

    def workspace(worker: str) -> Workspace:
        tree = tmp_path / worker
        tree.mkdir()
        task = Task(id=f"t-{worker}", master="m", kind="k", worker_type="w", estimate=Estimate(seconds=1, tokens=0))
        ctx = TaskContext(
            task=task, attempt=1, target_path=tmp_path, run_id="r", worker_id=worker, redis=redis, keys=KEYS
        )
        return Workspace(ctx, tmp_path / "repo", tree, tmp_path)

    first, second = workspace("w1"), workspace("w2")
    await first.write_file("src/app.py", "one")
    waiting = asyncio.ensure_future(second.write_file("src/app.py", "two"))
    done, _ = await asyncio.wait([waiting], timeout=0.5)
    assert not done  # the file is held by the first task until it ends
    assert str(await redis.get(lock_key(f"file:{(tmp_path / 'repo').resolve()}/src/app.py"))).startswith("w1|")
    await first.release()
    assert await asyncio.wait_for(waiting, 10) == "wrote 3 characters to src/app.py"
    with pytest.raises(ValueError, match="outside the repository"):
        await second.write_file("../outside.py", "x")
    await second.release()
