"""Recurring definitions, the fire key, and the beat leader's heartbeat, on every backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec

from jobworker.clock import FrozenClock
from jobworker.models import JobStatus, LeaseTerm
from jobworker.recurring import RecurringSpec, fire_key
from jobworker.storage import Storage

from .conftest import NewJobFactory

NIGHTLY = RecurringSpec(
    name="nightly", job_type="t.noop", cron="0 2 * * *", timezone="Europe/Amsterdam"
)


async def test_upsert_adds_updates_and_keeps_state(storage: Storage, clock: FrozenClock) -> None:
    await storage.recurring.upsert_recurring(
        [NIGHTLY, RecurringSpec(name="z", job_type="t.b", cron="* * * * *")]
    )
    await storage.recurring.upsert_recurring([NIGHTLY])  # every beat does this at start: no change
    nightly, b = await storage.recurring.list_recurring()
    assert (nightly.name, nightly.cron, nightly.timezone, nightly.enabled) == (
        "nightly", "0 2 * * *", "Europe/Amsterdam", True,
    )  # fmt: skip
    assert nightly.args == b"{}" and nightly.last_fire_at is None and nightly.next_fire_at is None
    assert nightly.updated_at == clock.now() and b.timezone == "UTC"

    instant = datetime(2030, 1, 2, 1, 0, tzinfo=UTC)
    await storage.recurring.advance_recurring("nightly", instant)
    assert await storage.recurring.set_recurring_enabled("nightly", False)
    assert not await storage.recurring.set_recurring_enabled("missing", False)
    clock.advance(60)
    await storage.recurring.upsert_recurring([NIGHTLY])
    [nightly, _] = await storage.recurring.list_recurring()
    assert not nightly.enabled, "a restart of beat does not enable what an operator disabled"
    assert nightly.next_fire_at == instant and nightly.updated_at < clock.now()

    changed = RecurringSpec(name="nightly", job_type="t.noop", cron="0 3 * * *", args=b'{"a":1}')
    await storage.recurring.upsert_recurring([changed])
    [nightly, _] = await storage.recurring.list_recurring()
    assert (nightly.cron, nightly.timezone) == ("0 3 * * *", "UTC")
    assert msgspec.json.decode(nightly.args) == {"a": 1}
    assert nightly.next_fire_at is None, "a new schedule is scheduled again from now"
    assert nightly.updated_at == clock.now() and not nightly.enabled


async def test_enabling_again_schedules_from_now(storage: Storage) -> None:
    await storage.recurring.upsert_recurring([NIGHTLY])
    await storage.recurring.advance_recurring("nightly", datetime(2030, 1, 2, 1, 0, tzinfo=UTC))
    assert await storage.recurring.set_recurring_enabled(
        "nightly", True
    )  # already enabled: unchanged
    assert (await storage.recurring.list_recurring())[0].next_fire_at is not None
    await storage.recurring.set_recurring_enabled("nightly", False)
    await storage.recurring.set_recurring_enabled("nightly", True)
    assert (await storage.recurring.list_recurring())[0].next_fire_at is None


async def test_an_instant_fires_once_even_after_its_job_is_purged(
    storage: Storage, new_job: NewJobFactory
) -> None:
    await storage.recurring.upsert_recurring([NIGHTLY])
    instant = datetime(2030, 1, 1, 1, 0, tzinfo=UTC)
    after = instant + timedelta(days=1)
    job = new_job(idempotency_key=fire_key("nightly", instant))
    fired = await storage.recurring.fire_recurring("nightly", instant, after, job)
    assert fired is not None and fired.created and fired.job_id == job.id
    [record] = await storage.recurring.list_recurring()
    assert record.last_fire_at == instant and record.next_fire_at == after

    # A second leader, a replay, a clock step: the same instant again, or an earlier one.
    again = new_job(idempotency_key=fire_key("nightly", instant))
    assert await storage.recurring.fire_recurring("nightly", instant, after, again) is None
    earlier = instant - timedelta(days=1)
    older = new_job(idempotency_key=fire_key("nightly", earlier))
    assert await storage.recurring.fire_recurring("nightly", earlier, instant, older) is None
    assert (
        await storage.inspection.get(again.id) is None
        and await storage.inspection.get(older.id) is None
    )

    # The job ran and was purged (or deleted): the guard does not depend on it.
    await storage.control.delete_job(job.id)
    assert await storage.recurring.fire_recurring("nightly", instant, after, again) is None
    assert sum((await storage.inspection.count_by_status()).values()) == 0

    nxt = new_job(idempotency_key=fire_key("nightly", after))
    fired = await storage.recurring.fire_recurring("nightly", after, after + timedelta(days=1), nxt)
    assert fired is not None and fired.created
    assert (await storage.inspection.get(nxt.id)).status is JobStatus.QUEUED  # type: ignore[union-attr]


async def test_a_held_fire_key_answers_with_its_job_and_disabled_never_fires(
    storage: Storage, new_job: NewJobFactory
) -> None:
    await storage.recurring.upsert_recurring([NIGHTLY])
    instant = datetime(2030, 1, 1, 1, 0, tzinfo=UTC)
    holder = new_job(idempotency_key=fire_key("nightly", instant))
    await storage.jobs.enqueue_many([holder])
    fired = await storage.recurring.fire_recurring(
        "nightly",
        instant,
        instant + timedelta(days=1),
        new_job(idempotency_key=holder.idempotency_key),
    )
    assert fired is not None and not fired.created and fired.job_id == holder.id

    await storage.recurring.set_recurring_enabled("nightly", False)
    later = instant + timedelta(days=1)
    job = new_job(idempotency_key=fire_key("nightly", later))
    assert await storage.recurring.fire_recurring("nightly", later, later, job) is None
    assert await storage.recurring.fire_recurring("unknown", later, later, job) is None
    await storage.recurring.advance_recurring("nightly", later + timedelta(days=9))
    [record] = await storage.recurring.list_recurring()
    assert record.next_fire_at == later and record.last_fire_at == instant


async def test_next_fire_never_moves_backwards(storage: Storage) -> None:
    await storage.recurring.upsert_recurring([NIGHTLY])
    t = datetime(2030, 1, 2, 1, 0, tzinfo=UTC)
    await storage.recurring.advance_recurring("nightly", t)
    await storage.recurring.advance_recurring("nightly", t - timedelta(hours=1))
    assert (await storage.recurring.list_recurring())[0].next_fire_at == t


async def test_the_leader_heartbeat(storage: Storage, clock: FrozenClock) -> None:
    assert await storage.leadership.beat_leader() is None
    first = LeaseTerm(holder="a", since=clock.now(), mechanism="redis", token="t1")
    await storage.leadership.record_beat_leader("beat", first, clock.now() + timedelta(seconds=15))
    leader = await storage.leadership.beat_leader()
    assert leader is not None and (leader.holder, leader.mechanism, leader.token) == (
        "a", "redis", "t1",
    )  # fmt: skip
    assert leader.since == clock.now() and leader.renewed_at == clock.now()
    assert leader.expires_at == clock.now() + timedelta(seconds=15)

    clock.advance(5)
    second = LeaseTerm(holder="b", since=clock.now(), mechanism="redis", token="t2")
    await storage.leadership.record_beat_leader("beat", second, clock.now() + timedelta(seconds=15))
    leader = await storage.leadership.beat_leader()
    assert leader is not None and leader.holder == "b", "a newer term replaces an older one"
    await storage.leadership.record_beat_leader("beat", first, clock.now() + timedelta(seconds=15))
    leader = await storage.leadership.beat_leader()
    assert leader is not None and leader.holder == "b", "a stale leader cannot overwrite it"

    await storage.leadership.clear_beat_leader("beat", "t1")  # not its term: nothing happens
    assert await storage.leadership.beat_leader() is not None
    clock.advance(16)
    assert await storage.leadership.beat_leader() is None, "an expired heartbeat means no leader"
    clock.advance(-16)
    await storage.leadership.clear_beat_leader("beat", "t2")
    assert await storage.leadership.beat_leader() is None
