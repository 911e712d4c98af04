"""Several Redis commands run atomically by one script call, with one reply.

A ``MULTI`` block answers ``QUEUED`` to each command and then returns every command's reply, which redis-py reads
and parses one by one: for a master dispatching 200 tasks, 400 replies it does not use. The commands go to the
script as flat arguments, each command's number of arguments followed by them (``flat``); the coordinator's fenced
batch (``locks``) runs its commands with the same Lua (``RUN_COMMANDS``) after its fence check and its records.

Like the other scripts, these touch keys named in their arguments: fine on one server or a primary with replicas.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import redis.asyncio as aredis

RUN_COMMANDS = """
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + n))
  i = i + n + 1
end
"""
"""Lua that runs the commands laid out by ``flat`` from ``ARGV[i]`` on (``i`` set before it)."""

_ATOMIC = "local i = 1\n" + RUN_COMMANDS + "return 1\n"


def flat(commands: Iterable[Sequence[Any]]) -> list[Any]:
    """``commands`` as script arguments: each one's length, then its arguments."""
    out: list[Any] = []
    for command in commands:
        out.append(len(command))
        out += command
    return out


class Atomic:
    """Runs lists of commands atomically on ``redis`` (all of them, in order, with nothing in between)."""

    def __init__(self, redis: aredis.Redis) -> None:
        self._script = redis.register_script(_ATOMIC)

    async def run(self, commands: Iterable[Sequence[Any]]) -> None:
        """Run ``commands``; a server that lost its scripts has it loaded again (redis-py's ``Script``)."""
        await self._script(args=flat(commands))
