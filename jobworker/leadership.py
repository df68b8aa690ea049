"""Leader leases: at most one holder at a time, with a term identity, renewed well inside a TTL.

The Redis lease is `SET key value NX PX ttl`; renewing and releasing are compare-and-set Lua
scripts, so a holder that lost its lease (it stalled past the TTL and another took over) can
neither extend nor delete the new holder's. The value names the holder and when its term began,
for `jobworker beat --status`.

`RedisOrDatabaseLease` moves a beat between Redis's lease and the database's own while Redis
goes away and comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import msgspec

from jobworker.errors import ConfigurationError, MissingExtraError
from jobworker.models import LeaseTerm

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


logger = logging.getLogger("jobworker.beat")

T = TypeVar("T")


def default_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class RedisLeaderLease:
    mechanism = "redis"

    def __init__(
        self,
        url: str,
        name: str,
        *,
        ttl: float = 30.0,
        prefix: str = "jobworker:",
        holder: str | None = None,
        client: Any = None,
    ) -> None:
        try:
            import redis.asyncio as aioredis
        except ImportError:  # pragma: no cover - exercised only without the extra
            raise MissingExtraError("redis", "redis") from None
        if ttl <= 0:
            raise ConfigurationError("a leader lease needs a ttl greater than 0")
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.key = f"{prefix}leader:{name}"
        self.ttl = ttl
        self.holder = holder or default_holder()
        # No retries inside the client: the election loop retries, and must see an outage as it
        # happens, not after the client's own back-off.
        self._client: Any = client or aioredis.from_url(
            url,
            socket_connect_timeout=min(3.0, ttl / 3),
            socket_timeout=min(3.0, ttl / 3),
            retry=Retry(NoBackoff(), 0),
        )
        self._renew = self._client.register_script(_RENEW)
        self._release = self._client.register_script(_RELEASE)
        self.term: LeaseTerm | None = None
        self._value: bytes | None = None

    async def acquire(self) -> bool:
        """Take the lease if nobody holds it; True if this process now leads."""
        term = LeaseTerm(
            holder=self.holder,
            since=datetime.now(UTC),
            mechanism=self.mechanism,
            token=uuid.uuid4().hex,
        )
        value = msgspec.json.encode(term)
        taken = await self._client.set(self.key, value, nx=True, px=int(self.ttl * 1000))
        if taken:
            self.term, self._value = term, value
        return bool(taken)

    async def renew(self) -> bool:
        """Extend this term; False if it is no longer ours (then stop leader work at once)."""
        if self._value is None:
            return False
        renewed = await self._renew(keys=[self.key], args=[self._value, int(self.ttl * 1000)])
        if not renewed:
            self.term, self._value = None, None
        return bool(renewed)

    async def release(self) -> None:
        """Give the lease up, if it is still ours."""
        if self._value is not None:
            await self._release(keys=[self.key], args=[self._value])
        self.term, self._value = None, None

    async def current(self) -> LeaseTerm | None:
        """The term of whoever leads now (this process or another), if anyone does."""
        value = await self._client.get(self.key)
        return None if value is None else msgspec.json.decode(value, type=LeaseTerm)

    async def ping(self) -> bool:
        return bool(await self._client.ping())

    async def close(self) -> None:
        await self._client.aclose()


class Lease(Protocol):
    """A leader lease (the shape of `jobworker.storage.ports.LeaderLease`)."""

    mechanism: str
    term: LeaseTerm | None

    async def acquire(self) -> bool: ...

    async def renew(self) -> bool: ...

    async def release(self) -> None: ...

    async def current(self) -> LeaseTerm | None: ...

    async def close(self) -> None: ...


class LeaseMoved(Exception):
    """This leader's term ends because leadership moved to another mechanism."""


class RedisOrDatabaseLease:
    """Redis's lease while Redis answers; the database's own lease (its lock) once Redis has been
    unreachable for longer than the TTL; Redis's again once it answers.

    Each mechanism admits one holder, and a process competes through one of them at a time. By
    the time a beat moves to the database, a Redis lease it could not reach has lapsed, unless
    another beat still reaches Redis and renews it (docs/beat.md: beats that disagree). Moving
    back goes through the database's lock: its holder, leader or not, takes the Redis lease
    while it holds the lock, then gives the lock up. A leader's term goes on without a gap; if
    another beat leads by Redis already, the holder steps down (`LeaseMoved`) or stays a standby.
    """

    def __init__(
        self,
        redis: RedisLeaderLease,
        database: Lease,
        *,
        ttl: float,
        redis_answers: bool,
        timeout: float,
    ) -> None:
        self.redis = redis
        self.database = database
        self._ttl = ttl
        self._timeout = timeout  # for each call to Redis
        self._lease: Lease = redis if redis_answers else database
        self._unreachable_since = None if redis_answers else time.monotonic()
        self.mechanism = self._lease.mechanism
        self.term: LeaseTerm | None = None

    @property
    def on_redis(self) -> bool:
        return self._lease is self.redis

    async def acquire(self) -> bool:
        if self.on_redis:
            try:
                return self._synced(await self._call_redis(self.redis.acquire()))
            except Exception:
                if not self._redis_gone_too_long():
                    raise
            self._use(
                self.database,
                f"Redis has been unreachable for longer than the lease ({self._ttl:g}s): beat "
                f"competes for the database's lock ({self.database.mechanism}) until it answers",
            )
        if not await self.database.acquire():
            return self._synced(False)
        if await self._redis_is_back():
            return self._synced(await self._move_to_redis(leading=False))
        return self._synced(True)

    async def renew(self) -> bool:
        if self.on_redis:
            return self._synced(await self._call_redis(self.redis.renew()))
        if await self._redis_is_back():
            return self._synced(await self._move_to_redis(leading=True))
        return self._synced(await self.database.renew())

    async def release(self) -> None:
        for lease in (self.redis, self.database):
            if lease.term is not None:
                timeout = self._timeout if lease is self.redis else 5.0
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(lease.release(), timeout)
        self._synced(False)

    async def current(self) -> LeaseTerm | None:
        return await self._lease.current()

    async def close(self) -> None:
        for lease in (self.redis, self.database):
            with contextlib.suppress(Exception):
                await lease.close()

    async def _move_to_redis(self, *, leading: bool) -> bool:
        """Holding the database's lock: take Redis's lease, then give the lock up. True if this
        process now leads (by Redis, or still by the database if Redis went away again)."""
        try:
            taken = await self._call_redis(self.redis.acquire())
        except Exception:
            return await self.database.renew() if leading else True
        with contextlib.suppress(Exception):
            await self.database.release()
        self._use(self.redis, "Redis answers again: beat moves back to its lease")
        if not taken and leading:
            raise LeaseMoved("Redis answers again, and another beat leads by it")
        return bool(taken)

    async def _call_redis(self, call: Awaitable[T]) -> T:
        try:
            result = await asyncio.wait_for(call, self._timeout)
        except Exception:
            if self._unreachable_since is None:
                self._unreachable_since = time.monotonic()
            raise
        self._unreachable_since = None
        return result

    def _redis_gone_too_long(self) -> bool:
        since = self._unreachable_since
        return since is not None and time.monotonic() - since > self._ttl

    async def _redis_is_back(self) -> bool:
        """Whether Redis answers a PING (asked by the lock's holder only: at each renewal of a
        leader, when a standby gets the lock)."""
        try:
            await self._call_redis(self.redis.ping())
        except Exception:
            return False
        return True

    def _use(self, lease: Lease, why: str) -> None:
        if lease is not self._lease:
            self._lease = lease
            self.mechanism = lease.mechanism
            logger.warning(why)

    def _synced(self, leads: bool) -> bool:
        self.term = self._lease.term if leads else None
        return leads
