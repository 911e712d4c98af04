"""Connecting to Redis: bounded retries at connect time, automatic retries with backoff afterwards."""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import hiredis
import redis.asyncio as aredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import AuthenticationError, AuthorizationError, DataError, InvalidResponse, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cortex.config import check_redis_url
from cortex.errors import InputError, RedisUnavailable

MIN_VERSION = (6, 2)


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``, safe for logs, state files and reports."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def client(
    url: str, *, retries: int = 8, max_connections: int | None = None, pool_timeout_s: float = 5.0
) -> aredis.Redis:
    """An asyncio client whose commands retry through short outages (exponential backoff, capped at 2 s). With
    ``max_connections``, its pool is bounded and a command waits up to ``pool_timeout_s`` for a free connection
    rather than opening one more (a service shared by many clients: the catalog)."""
    options: dict[str, Any] = {
        "decode_responses": True,
        "retry": Retry(ExponentialBackoff(cap=2.0, base=0.05), retries),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
        "health_check_interval": 10,
    }
    if max_connections is None:
        pool = aredis.ConnectionPool.from_url(url, **options)
    else:
        pool = aredis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=pool_timeout_s, **options
        )
    # the URL decides the class (TCP, unix socket, TLS); each packs its commands with hiredis
    pool.connection_class = _hiredis_packed(pool.connection_class)
    return aredis.Redis.from_pool(pool)


class _HiredisPacking:
    """Commands packed by hiredis's C packer, as redis-py's synchronous client does. Its asyncio connections pack
    in Python: a tenth of a worker's time per no-op task went to packing its settle and claim commands (6.4 us for
    a 13-argument command, 0.8 us with hiredis). Values are encoded as redis-py's encoder does (UTF-8, ``repr``
    of numbers); a value it refuses (None, a bool, a list) is a ``DataError`` here too."""

    def pack_command(self, *args: Any) -> list[bytes]:
        """One command in the Redis protocol (a first argument holding spaces, ``CLIENT SETNAME``, is split)."""
        first = args[0]
        if isinstance(first, str):
            args = (*first.encode().split(), *args[1:])
        elif b" " in first:
            args = (*first.split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError as exc:
            raise DataError(f"{exc} (command {args[0]!r})") from exc


@functools.cache
def _hiredis_packed(cls: type[Any]) -> type[Any]:
    return type(f"HiredisPacked{cls.__name__}", (_HiredisPacking, cls), {})


class Sent:
    """Commands written to Redis on a connection of their own, their replies not read yet (``send``). More
    commands can follow on the same connection (``then``): Redis runs a connection's commands in the order they
    were written, so what follows is ordered after them without waiting for their replies."""

    def __init__(self, redis: aredis.Redis, conn: Any, n: int) -> None:
        self._redis, self._conn, self._n, self._head = redis, conn, n, n
        self._replies: list[Any] | None = None
        self._reading = asyncio.Lock()  # two readers of one connection would each take part of the replies

    @property
    def unread(self) -> bool:
        """The replies are not read yet, so more commands can follow on the connection (``then``)."""
        return self._replies is None and self._conn is not None

    async def then(self, commands: list[list[Any]]) -> list[Any] | None:
        """Write ``commands`` after these on the same connection, read every reply, and return theirs; None when
        the replies were read already (nothing more can follow: send them another way). An error reply among
        them raises; one among the first commands' replies is raised by ``replies``."""
        async with self._reading:  # not while another reader takes the first replies and gives the connection back
            if not self.unread or not self._conn.is_connected:  # (a reconnected socket has none of the replies)
                return None
            start = self._n
            try:
                # no health check: its PING would read the first commands' reply as its own (and on a mismatch
                # reconnect, to wait forever for replies the new socket never gets)
                await self._conn.send_packed_command(self._conn.pack_commands(commands), check_health=False)
            except BaseException:
                await self.close()
                raise
            self._n += len(commands)
            return _raise_first((await self._read())[start:])

    async def replies(self) -> list[Any]:
        """Read the replies (once; later calls, concurrent ones too, return them again) and give the connection
        back. An error reply raises (the connection stays in use); a lost connection raises, and it is closed."""
        async with self._reading:
            return _raise_first((await self._read())[: self._head])

    async def _read(self) -> list[Any]:
        if self._replies is None:
            if self._conn is None:
                raise RedisConnectionError("the replies of these commands were lost with their connection")
            replies: list[Any] = []
            try:
                for _ in range(self._n):
                    try:
                        replies.append(await self._conn.read_response())
                    except ResponseError as exc:  # a whole reply: the connection is still in step
                        replies.append(exc)
            except BaseException:
                await self.close()
                raise
            self._replies = replies
            await self._redis.connection_pool.release(self._conn)
            self._conn = None
        return self._replies

    async def close(self) -> None:
        """Give up on replies not read yet: the connection is closed (they would arrive on it out of turn)."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.disconnect()
            await self._redis.connection_pool.release(conn)


def _raise_first(replies: list[Any]) -> list[Any]:
    for reply in replies:
        if isinstance(reply, ResponseError):
            raise reply
    return replies


async def send(redis: aredis.Redis, commands: list[list[str]]) -> Sent:
    """Write ``commands`` to Redis now and return without waiting for their replies: the caller works meanwhile
    and reads them with ``Sent.replies`` (once written, they are carried out even if this process dies). No
    retry: a connection error raises here or there."""
    conn = await redis.connection_pool.get_connection()
    sent = Sent(redis, conn, len(commands))
    try:
        await conn.send_packed_command(conn.pack_commands(commands))
    except BaseException:
        await sent.close()
        raise
    return sent


def pool_use(redis: aredis.Redis) -> tuple[int, int | None]:
    """Connections of ``redis``'s pool in use now, and the most it may open (None: unbounded)."""
    pool = redis.connection_pool
    bounded = isinstance(pool, aredis.BlockingConnectionPool)
    return len(pool._in_use_connections), pool.max_connections if bounded else None  # noqa: SLF001  (no public count)


async def connect(
    url: str, *, attempts: int = 5, first_delay_s: float = 0.2, wait_s: float | None = None
) -> aredis.Redis:
    """A client that has answered PING and runs a supported server version. It tries ``attempts`` times with
    backoff, or for ``wait_s`` seconds when given (a process of a running run waits out an outage). What cannot
    succeed on retry fails at once: a URL that is not one, a wrong password or database index (``InputError``), a
    server that does not speak Redis or is too old (``RedisUnavailable``)."""
    try:
        check_redis_url(url)
    except ValueError as exc:
        raise InputError("CORTEX_REDIS_URL", str(exc)) from None
    delay = first_delay_s
    deadline = None if wait_s is None else time.monotonic() + wait_s
    last: Exception | None = None
    attempt = 0
    while True:
        attempt += 1
        conn = client(url, retries=0)
        try:
            await conn.ping()
            info = await conn.info("server")
            version = tuple(int(x) for x in str(info.get("redis_version", "0.0")).split(".")[:2])
            if version < MIN_VERSION:
                raise RedisUnavailable(
                    f"Redis at {redact_url(url)} is version {info.get('redis_version')}; Cortex needs 6.2 or newer"
                )
            return client(url)
        except (AuthenticationError, AuthorizationError) as exc:
            raise InputError("CORTEX_REDIS_URL", f"Redis at {redact_url(url)} refused the credentials: {exc}") from None
        except ResponseError as exc:  # e.g. "DB index is out of range", a password the server does not want
            raise InputError("CORTEX_REDIS_URL", f"Redis at {redact_url(url)} refused the connection: {exc}") from None
        except (InvalidResponse, UnicodeDecodeError) as exc:
            raise RedisUnavailable(
                f"what answers at {redact_url(url)} does not speak the Redis protocol ({type(exc).__name__}); "
                "check the host and port in CORTEX_REDIS_URL"
            ) from None
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            if isinstance(exc.__cause__, ResponseError):  # the server refused the handshake (SELECT, AUTH)
                raise InputError(
                    "CORTEX_REDIS_URL", f"Redis at {redact_url(url)} refused the connection: {exc}"
                ) from None
            last = exc
            more = time.monotonic() < deadline if deadline is not None else attempt < attempts
            if not more:
                break
            await asyncio.sleep(delay)  # backoff between connection attempts
            delay = min(delay * 2, 5.0)
        finally:
            await conn.aclose()
    tried = f"for {wait_s:.0f} s" if wait_s is not None else f"after {attempts} attempts"
    raise RedisUnavailable(
        f"cannot reach Redis at {redact_url(url)} {tried}: {last}; "
        "check CORTEX_REDIS_URL, or unset it to use the embedded server"
    )
