"""The database leader lease every backend offers (beat's leadership when Redis is absent)."""

from __future__ import annotations

import pytest

from jobworker.clock import FrozenClock
from jobworker.storage import Storage


async def test_one_holder_at_a_time_and_release_frees_it(storage: Storage) -> None:
    a = storage.leadership.leader_lease("beat", "host-a", 30.0)
    b = storage.leadership.leader_lease("beat", "host-b", 30.0)
    other = storage.leadership.leader_lease("other-duty", "host-b", 30.0)
    try:
        assert await a.acquire()
        assert not await b.acquire()
        assert await other.acquire(), "leases of other names are independent"
        current = await b.current()
        assert current is not None and current.holder == "host-a" and current == a.term
        assert await a.renew()
        await a.release()
        assert a.term is None and not await a.renew()
        assert await b.acquire()
        current = await a.current()
        assert current is not None and current.holder == "host-b"
    finally:
        for lease in (a, b, other):
            await lease.release()
            await lease.close()


async def test_a_lapsed_term_passes_to_another_holder(storage: Storage, clock: FrozenClock) -> None:
    if storage.dialect in ("postgres", "sqlserver"):
        pytest.skip("a session lock has no TTL: it ends with its session (tests/test_postgres)")
    a = storage.leadership.leader_lease("beat", "host-a", 10.0)
    b = storage.leadership.leader_lease("beat", "host-b", 10.0)
    try:
        assert await a.acquire()
        clock.advance(9)
        assert not await b.acquire()
        assert await a.renew()  # renewed at 9 s: good until 19 s
        clock.advance(9.5)
        assert not await b.acquire()
        clock.advance(1)  # a stalled past its TTL
        assert await b.acquire()
        assert not await a.renew(), "the old holder finds it lost the lease"
        current = await a.current()
        assert current is not None and current.holder == "host-b"
    finally:
        await a.close()
        await b.close()
