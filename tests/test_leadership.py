"""The Redis leader lease, against a real Redis."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis

from jobworker.leadership import RedisLeaderLease

REDIS_URL = os.environ.get("JOBWORKER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
async def lease() -> AsyncIterator[Callable[..., RedisLeaderLease]]:
    prefix = f"jw_test_{uuid.uuid4().hex[:10]}:"
    made: list[RedisLeaderLease] = []

    def make(holder: str, ttl: float = 0.5) -> RedisLeaderLease:
        instance = RedisLeaderLease(REDIS_URL, "beat", ttl=ttl, prefix=prefix, holder=holder)
        made.append(instance)
        return instance

    yield make
    for instance in made:
        await instance.close()
    cleanup = aioredis.from_url(REDIS_URL)
    async for key in cleanup.scan_iter(match=f"{prefix}*"):
        await cleanup.delete(key)
    await cleanup.aclose()


async def test_one_leader_at_a_time(lease: Callable[..., RedisLeaderLease]) -> None:
    a, b = lease("a"), lease("b")
    results = await asyncio.gather(a.acquire(), b.acquire())
    assert sorted(results) == [False, True]
    leader = a if results[0] else b
    current = await b.current()
    assert current is not None and current.holder == leader.holder
    assert current.mechanism == "redis" and current == leader.term


async def test_a_lapsed_leader_cannot_renew_or_release_the_new_term(
    lease: Callable[..., RedisLeaderLease],
) -> None:
    a, b = lease("a", ttl=0.3), lease("b", ttl=0.3)
    assert await a.acquire()
    assert await a.renew()
    await asyncio.sleep(0.45)  # a stalls past its TTL (as under SIGSTOP)
    assert await b.acquire()
    assert not await a.renew(), "the old leader finds it lost the lease"
    assert a.term is None
    await a.release()  # a no-op: it is b's lease now
    current = await b.current()
    assert current is not None and current.holder == "b"
    assert await b.renew()


async def test_release_lets_another_lead_at_once(lease: Callable[..., RedisLeaderLease]) -> None:
    a, b = lease("a", ttl=30), lease("b", ttl=30)
    assert await a.acquire() and not await b.acquire()
    await a.release()
    assert await b.acquire()
    first, second = (await b.current()), b.term
    assert first == second and second is not None and second.token != ""
