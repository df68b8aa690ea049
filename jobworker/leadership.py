"""Leader leases: at most one holder at a time, with a term identity, renewed well inside a TTL.

The Redis lease is `SET key value NX PX ttl`; renewing and releasing are compare-and-set Lua
scripts, so a holder that lost its lease (it stalled past the TTL and another took over) can
neither extend nor delete the new holder's. The value names the holder and when its term began,
for `jobworker beat --status`.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import UTC, datetime
from typing import Any

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
        self.key = f"{prefix}leader:{name}"
        self.ttl = ttl
        self.holder = holder or default_holder()
        self._client: Any = client or aioredis.from_url(url, socket_connect_timeout=3)
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

    async def close(self) -> None:
        await self._client.aclose()
