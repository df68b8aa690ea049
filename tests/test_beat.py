"""Beat's firing rules on a frozen clock (DST, look-back, clock steps, two leaders), the client
and CLI for recurring jobs, and the leader duties in-process, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from jobworker import App, ConfigurationError, JobContext, JobStatus, Registry
from jobworker.beat import Beat, recurring_specs
from jobworker.cli import main
from jobworker.clock import FrozenClock
from jobworker.definitions import import_object
from jobworker.models import AttemptOutcome, JobFilter, JobKind, LeaseTerm, ScheduleOptions
from jobworker.storage import Storage

from .conftest import TESTS, Store


def make_registry() -> Registry:
    registry = Registry()

    @registry.job(name="t.nightly", kind="system", cron="30 2 * * *", timezone="Europe/Amsterdam")
    def nightly(ctx: JobContext) -> None: ...

    @registry.job(name="t.minutely", kind="system", cron="* * * * *")
    def minutely(ctx: JobContext) -> None: ...

    @registry.job(name="t.report")
    def report(ctx: JobContext, to: str, copies: int = 1) -> None: ...

    return registry


class Rig:
    """An app on a frozen clock, its opened storage, and beats that tick on demand."""

    def __init__(self, store: Store, clock: FrozenClock, **settings: object) -> None:
        self.clock = clock
        self.app = App(
            store.url,
            registry=make_registry(),
            clock=clock,
            database_schema=store.schema,
            **settings,
        )
        self.storage: Storage = self.app.create_storage()

    def beat(self) -> Beat:
        return Beat(self.app, storage=self.storage)

    async def fire_keys(self) -> list[str]:
        jobs = await self.storage.inspection.list_jobs(JobFilter(), limit=10_000)
        return sorted(job.idempotency_key or "" for job in jobs)


@pytest.fixture
async def rig(store: Store) -> AsyncIterator[Rig]:
    clock = FrozenClock(datetime(2030, 3, 30, 12, 0, tzinfo=UTC))
    instance = Rig(store, clock)
    await instance.storage.open()
    await instance.storage.recurring.upsert_recurring(recurring_specs(instance.app.registry))
    yield instance
    await instance.storage.close()


async def step_through(rig: Rig, beat: Beat, until: datetime, step: timedelta) -> None:
    """Move the clock to `until` in steps, firing what is due at each (one leader all along)."""
    term = rig.clock.now()
    while rig.clock.now() < until:
        rig.clock.advance(step)
        await beat.fire_due(term)


def keys_of(keys: list[str], name: str) -> list[str]:
    return [key.split(f"cron:{name}:", 1)[1] for key in keys if key.startswith(f"cron:{name}:")]


async def test_spring_forward_fires_the_skipped_time_once_at_the_jump(rig: Rig) -> None:
    # 2030-03-31, Amsterdam: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that day.
    await rig.storage.recurring.set_recurring_enabled("t.minutely", False)
    await step_through(
        rig, rig.beat(), datetime(2030, 4, 1, 12, 0, tzinfo=UTC), timedelta(minutes=7)
    )
    assert keys_of(await rig.fire_keys(), "t.nightly") == [
        "2030-03-31T01:00:00.000000+00:00",  # 03:00 CEST, the first minute after the jump
        "2030-04-01T00:30:00.000000+00:00",  # 02:30 CEST
    ]


async def test_fall_back_fires_the_repeated_time_once(rig: Rig) -> None:
    # 2030-10-27, Amsterdam: 03:00 CEST returns to 02:00 CET; 02:30 happens twice.
    await rig.storage.recurring.set_recurring_enabled("t.minutely", False)
    rig.clock.set(datetime(2030, 10, 25, 12, 0, tzinfo=UTC))
    await rig.storage.recurring.upsert_recurring([])
    beat = rig.beat()
    await step_through(rig, beat, datetime(2030, 10, 28, 12, 0, tzinfo=UTC), timedelta(minutes=7))
    assert keys_of(await rig.fire_keys(), "t.nightly") == [
        "2030-10-26T00:30:00.000000+00:00",  # 02:30 CEST
        "2030-10-27T00:30:00.000000+00:00",  # the first 02:30 (CEST), not the second (CET)
        "2030-10-28T01:30:00.000000+00:00",  # 02:30 CET
    ]


async def test_a_late_leader_fires_every_tick_since_its_term_began(rig: Rig) -> None:
    await rig.storage.recurring.set_recurring_enabled("t.nightly", False)
    beat = rig.beat()
    term = rig.clock.now()
    await beat.fire_due(term)  # schedules: the next minute
    rig.clock.advance(timedelta(minutes=3, seconds=10))  # the loop was late: three ticks are due
    await beat.fire_due(term)
    assert keys_of(await rig.fire_keys(), "t.minutely") == [
        "2030-03-30T12:01:00.000000+00:00",
        "2030-03-30T12:02:00.000000+00:00",
        "2030-03-30T12:03:00.000000+00:00",
    ]


async def test_a_fire_stores_its_definitions_kind(rig: Rig) -> None:
    await rig.storage.recurring.set_recurring_enabled("t.nightly", False)
    await rig.app.client.aschedule_recurring("reports.hourly", "0 * * * *", "t.report", {"to": "a"})
    beat = rig.beat()
    term = rig.clock.now()
    await beat.fire_due(term)
    rig.clock.advance(timedelta(hours=1))
    await beat.fire_due(term)
    ran = await rig.app.client.arun_recurring("t.minutely")
    jobs = await rig.storage.inspection.list_jobs(JobFilter(), limit=1_000)
    kinds = {(job.job_type, job.kind) for job in jobs}
    assert kinds == {("t.minutely", JobKind.SYSTEM), ("t.report", JobKind.USER)}
    assert len(jobs) == 60 + 1 + 1  # every minute of the hour, the hour, and the run
    system = await rig.storage.inspection.list_jobs(JobFilter(kind=JobKind.SYSTEM), limit=1_000)
    assert len(system) == 61 and ran.job_id in {job.id for job in system}
    await rig.app.aclose()


async def test_missed_ticks_fire_once_on_recovery_within_the_look_back(rig: Rig) -> None:
    await rig.storage.recurring.set_recurring_enabled("t.nightly", False)
    await rig.beat().fire_due(rig.clock.now())
    rig.clock.advance(timedelta(minutes=1))
    await rig.beat().fire_due(rig.clock.now() - timedelta(minutes=5))  # fires 12:01
    # No leader for ten minutes; then a new one takes over (its term begins now).
    rig.clock.advance(timedelta(minutes=10, seconds=20))
    beat = rig.beat()
    await beat.fire_due(rig.clock.now())
    await beat.fire_due(rig.clock.now())  # and again: nothing more
    assert keys_of(await rig.fire_keys(), "t.minutely") == [
        "2030-03-30T12:01:00.000000+00:00",
        "2030-03-30T12:11:00.000000+00:00",  # the latest missed tick, once; not 12:02...12:10
    ]
    [minutely, _] = await rig.storage.recurring.list_recurring()
    assert minutely.next_fire_at == datetime(2030, 3, 30, 12, 12, tzinfo=UTC)


async def test_ticks_older_than_the_look_back_are_not_fired(store: Store) -> None:
    clock = FrozenClock(datetime(2030, 3, 30, 12, 0, tzinfo=UTC))
    rig = Rig(store, clock, cron_lookback=10.0)
    await rig.storage.open()
    try:
        await rig.storage.recurring.upsert_recurring(recurring_specs(rig.app.registry))
        await rig.storage.recurring.set_recurring_enabled("t.nightly", False)
        await rig.beat().fire_due(clock.now())
        clock.advance(timedelta(minutes=10, seconds=20))  # the latest missed tick: 20 s ago
        await rig.beat().fire_due(clock.now())
        assert await rig.fire_keys() == []
        [minutely, _] = await rig.storage.recurring.list_recurring()
        assert minutely.next_fire_at == datetime(2030, 3, 30, 12, 11, tzinfo=UTC)
    finally:
        await rig.storage.close()


async def test_clock_steps_and_a_second_leader_never_fire_an_instant_twice(rig: Rig) -> None:
    await rig.storage.recurring.set_recurring_enabled("t.nightly", False)
    first, second = rig.beat(), rig.beat()
    term = rig.clock.now()
    for _ in range(3):
        rig.clock.advance(timedelta(seconds=40))
        await first.fire_due(term)
        await second.fire_due(term)  # a stale second leader sees the same due ticks
    rig.clock.advance(timedelta(minutes=-2))  # the clock steps back two minutes
    for _ in range(6):
        rig.clock.advance(timedelta(seconds=30))
        await second.fire_due(term)
        await first.fire_due(term)
    keys = keys_of(await rig.fire_keys(), "t.minutely")
    # 12:01 and 12:02 once each although the clock passed them twice; 12:03 is new.
    assert keys == [f"2030-03-30T12:0{m}:00.000000+00:00" for m in (1, 2, 3)]
    assert first.fired + second.fired == 3


async def test_a_recurring_job_with_arguments_from_code(rig: Rig) -> None:
    client = rig.app.client
    await rig.storage.recurring.set_recurring_enabled("t.nightly", False)
    await rig.storage.recurring.set_recurring_enabled("t.minutely", False)
    record = await client.aschedule_recurring(
        "reports.weekly", "0 9 * * 1", "t.report", {"to": "ops"}, timezone="Europe/Amsterdam"
    )
    assert record.enabled and record.timezone == "Europe/Amsterdam"
    status = await client.abeat_status()
    weekly = next(r for r in status.recurring if r.name == "reports.weekly")
    assert weekly.next_fire_at == datetime(2030, 4, 1, 7, 0, tzinfo=UTC)  # Monday 09:00 CEST
    await step_through(rig, rig.beat(), datetime(2030, 4, 1, 8, 0, tzinfo=UTC), timedelta(hours=1))
    [job] = await rig.storage.inspection.list_jobs(JobFilter(), limit=10)
    assert job.job_type == "t.report" and json.loads(job.args) == {"to": "ops"}
    assert job.idempotency_key == "cron:reports.weekly:2030-04-01T07:00:00.000000+00:00"

    handle = await client.arun_recurring("reports.weekly")
    assert (await handle.aget()).status is JobStatus.QUEUED  # type: ignore[union-attr]
    await client.adisable_recurring("reports.weekly")
    await client.aenable_recurring("reports.weekly")
    with pytest.raises(ConfigurationError, match="no recurring job named 'nope'"):
        await client.adisable_recurring("nope")
    await rig.app.aclose()


@pytest.mark.parametrize(
    ("cron", "zone", "args", "message"),
    [
        ("61 * * * *", "UTC", {"to": "x"}, "does not parse"),
        ("* * *", "UTC", {"to": "x"}, "has 3 fields"),
        ("* * * * *", "Mars/Olympus", {"to": "x"}, "unknown time zone 'Mars/Olympus'"),
        ("* * * * *", "UTC", {}, "Object missing required field `to`"),
    ],
)
def test_bad_schedules_and_arguments_are_clear_errors_and_store_nothing(
    sqlite_url: str, cron: str, zone: str, args: dict[str, str], message: str
) -> None:
    app = App(sqlite_url, registry=make_registry())
    try:
        with pytest.raises(Exception, match=message):
            app.client.schedule_recurring("r", cron, "t.report", args, timezone=zone)
        assert app.client.list_recurring() == []
    finally:
        app.close()


def test_a_cron_job_that_needs_arguments_is_refused_when_beat_starts() -> None:
    registry = Registry()

    @registry.job(name="t.needs", kind="system", cron="* * * * *")
    def needs(ctx: JobContext, to: str) -> None: ...

    with pytest.raises(ConfigurationError, match="cannot run without arguments"):
        recurring_specs(registry)


def test_the_recurring_and_beat_status_commands(sqlite_url: str) -> None:
    runner = CliRunner()
    env = {"JOBWORKER_DATABASE_URL": sqlite_url}
    sys.path.insert(0, str(TESTS / "apps"))
    try:
        app = App(sqlite_url, registry=import_object("beat_jobs").every_second.registry)
    finally:
        sys.path.remove(str(TESTS / "apps"))
    app.client.schedule_recurring("daily-report", "0 9 * * *", "beat.report", {"to": "ops"})
    app.close()
    common = ["--app", "beat_jobs"]

    def run(*args: str) -> str:
        result = runner.invoke(main, list(args), env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    sys.path.insert(0, str(TESTS / "apps"))
    try:
        listed = run("recurring", "list", *common)
        assert "daily-report" in listed and "0 9 * * *" in listed and "enabled" in listed
        assert "recurring job daily-report disabled" in run("recurring", "disable", "daily-report")
        assert "disabled" in run("recurring", "list")
        run("recurring", "enable", "daily-report")
        job_id = run("recurring", "run", "daily-report", *common).strip()
        assert uuid.UUID(job_id)
        status = run("beat", "--status")
        assert status.startswith("leader: none") and "daily-report" in status
        data = json.loads(run("beat", "--status", "--json"))
        assert data["leader"] is None
        [report] = data["recurring"]
        assert report["args"] == {"to": "ops"} and report["next_fire_at"] is not None
        missing = runner.invoke(main, ["recurring", "enable", "nope"], env=env)
        assert missing.exit_code == 2 and "no recurring job named 'nope'" in missing.output
        no_module = runner.invoke(main, ["beat"], env=env)
        assert no_module.exit_code == 2 and "beat needs the module" in no_module.output
    finally:
        sys.path.remove(str(TESTS / "apps"))


async def test_the_leader_rescues_expired_leases_and_purges_while_workers_skip(
    store: Store,
) -> None:
    """In-process beat on the real clock: it leads, rescues a job whose worker vanished (an
    attempt row says why), purges an expired result, and records the heartbeat workers read."""
    app = store.app(
        registry=make_registry(), beat_lease_ttl=3.0, rescue_interval=0.2, janitor_interval=0.2
    )
    storage = app.create_storage()
    await storage.open()
    try:
        lost = (await app.client.aenqueue("t.report", {"to": "a"})).job_id
        await storage.jobs.claim("gone-worker", ["t.report"], ["default"], 1, 0.05)
        expired = await app.client.aenqueue(
            "t.report", {"to": "b"}, ScheduleOptions(result_ttl=0.0)
        )
        await app.client.acancel(expired.job_id)
        await asyncio.sleep(0.1)
        beat = Beat(app)
        task = asyncio.create_task(beat.run())
        # The rescue and the purge are separate passes of the leader: wait for both.
        for _ in range(200):
            await asyncio.sleep(0.05)
            record = await storage.inspection.get(lost)
            rescued = record is not None and record.status is JobStatus.QUEUED
            if rescued and await storage.inspection.get(expired.job_id) is None:
                break
        leader = await storage.leadership.beat_leader()
        assert leader is not None and leader.holder == beat.holder
        [attempt] = await storage.inspection.attempts(lost)
        assert attempt.outcome is AttemptOutcome.LOST and "lease expired" in (attempt.error or "")
        assert await storage.inspection.get(expired.job_id) is None, "the janitor purged it"
        beat.request_stop()
        await asyncio.wait_for(task, 10)
        assert await storage.leadership.beat_leader() is None, (
            "a leader that stops clears its heartbeat"
        )
    finally:
        await storage.close()
        await app.aclose()


async def test_workers_leave_maintenance_to_a_live_beat_leader(store: Store) -> None:
    from jobworker.worker import Worker, WorkerOptions

    app = store.app(registry=make_registry(), rescue_interval=0.1, poll_interval=0.05)
    storage = app.create_storage()
    await storage.open()
    clock = app.clock
    try:
        handle = await app.client.aenqueue("t.report", {"to": "a"})
        await storage.jobs.claim("gone-worker", ["t.report"], ["default"], 1, 0.05)
        term = LeaseTerm(holder="beat-x", since=clock.now(), mechanism="test", token="t")
        await storage.leadership.record_beat_leader(
            "beat", term, clock.now() + timedelta(seconds=30)
        )
        worker = Worker(app, WorkerOptions(worker_id="w-1", job_types=["t.nightly"]))
        task = asyncio.create_task(worker.run())
        await asyncio.sleep(1.0)
        record = await storage.inspection.get(handle.job_id)
        assert record is not None and record.status is JobStatus.RUNNING, "left to beat"
        await storage.leadership.clear_beat_leader("beat", "t")
        for _ in range(100):
            await asyncio.sleep(0.05)
            record = await storage.inspection.get(handle.job_id)
            if record is not None and record.status is JobStatus.QUEUED:
                break
        assert record is not None and record.status is JobStatus.QUEUED, "no leader: workers do it"
        worker.request_stop()
        await asyncio.wait_for(task, 10)
    finally:
        await storage.close()
        await app.aclose()
