"""`jobworker beat`: one leader at a time fires cron ticks, rescues expired leases and purges.

Every beat process registers the app's recurring definitions, then competes for one leader
lease (Redis when configured and reachable, else the database's own lock). The leader fires each
due tick through `Storage.fire_recurring`, whose compare-and-set on `last_fire_at` is the fire
key: a second leader, a clock step or a replay cannot enqueue an instant twice. A leader that
cannot renew its lease stops leader work at once; a leader that finds, after a stall, that its
lease may have lapsed writes nothing until a renewal confirms it.

Longer than 400 lines: the election, the leader loop and its maintenance share one term, one
trust deadline and one stop signal; the lease mechanisms live in leadership.py and the cron
arithmetic in recurring.py. The next seam to cut, when it grows, is the leader loop's firing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import msgspec

from jobworker import tracing
from jobworker.app import App
from jobworker.catalogue import record_job_types
from jobworker.clock import Clock
from jobworker.definitions import Registry
from jobworker.display import redact_url
from jobworker.enqueueing import build_jobs
from jobworker.errors import (
    ConfigurationError,
    JobArgumentsError,
    MissingExtraError,
    UnknownJobError,
)
from jobworker.leadership import (
    LeaseMoved,
    RedisLeaderLease,
    RedisOrDatabaseLease,
    default_holder,
)
from jobworker.maintenance import (
    mark_stale_workers,
    purge,
    rescue_expired_leases,
    settle_continuations,
)
from jobworker.metrics import otel
from jobworker.metrics.figures import Figures
from jobworker.models import LeaseTerm, ScheduleOptions, WorkerRole
from jobworker.outage import Outage
from jobworker.recurring import (
    BEAT_LEASE,
    BeatLeader,
    RecurringJob,
    RecurringSpec,
    fire_key,
    plan,
)
from jobworker.registration import Registration, process_row
from jobworker.storage import Storage
from jobworker.storage.ports import LeaderLease

logger = logging.getLogger("jobworker.beat")

# A leader trusts its lease for this share of the TTL after the start of its last renewal.
_TRUST = 0.9

# Between two passes of the leader, a wall clock that moved this many seconds further than the
# monotonic clock was stepped forward (NTP slews far less; a late loop moves both alike).
_CLOCK_STEP = 1.0


def recurring_specs(registry: Registry) -> list[RecurringSpec]:
    """The recurring definitions `@job(cron=...)` declares: each named after its job, with no
    arguments (a clear error now if the job needs some)."""
    specs = []
    for definition in registry:
        if definition.cron is None:
            continue
        try:
            args = definition.encode_args({})
        except JobArgumentsError as exc:
            raise ConfigurationError(
                f"job {definition.name!r} has cron={definition.cron!r} but cannot run without "
                f"arguments ({exc}); give its parameters defaults, or use "
                "client.schedule_recurring(..., args=...)"
            ) from None
        specs.append(
            RecurringSpec(
                name=definition.name,
                job_type=definition.name,
                cron=definition.cron,
                timezone=definition.timezone or "UTC",
                args=args,
            )
        )
    return specs


def redis_lease_name(url: str, schema: str) -> str:
    """The Redis lease's name: one per database (and schema), so that clusters sharing a Redis
    do not share a leader."""
    if url.startswith("sqlite:///"):
        url = "sqlite:///" + os.path.abspath(url[len("sqlite:///") :].split("?", 1)[0])
    identity = f"{url.split('@')[-1]}|{schema}"
    return f"{BEAT_LEASE}:{hashlib.sha256(identity.encode()).hexdigest()[:16]}"


async def redis_reachable(url: str, timeout: float) -> bool:
    """Whether Redis answers a PING within `timeout` seconds."""
    try:
        import redis.asyncio as aioredis
    except ImportError:
        logger.warning("JOBWORKER_REDIS_URL is set but the redis package is not installed")
        return False
    client = aioredis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        return bool(await asyncio.wait_for(client.ping(), timeout))
    except Exception as exc:
        logger.warning("Redis at %s is unreachable (%s)", redact_url(url), exc or type(exc))
        return False
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()


async def choose_lease(app: App, storage: Storage, holder: str) -> LeaderLease:
    """The database's own lease, or, with Redis configured, Redis's while it answers and the
    database's while it does not (starting on the database if Redis does not answer now)."""
    settings = app.settings
    ttl = settings.beat_lease_ttl
    database = storage.leadership.leader_lease(BEAT_LEASE, holder, ttl)
    if storage.dialect == "sqlite" and not settings.redis_url:
        logger.info(
            "leader election through a lease row in the SQLite file (no Redis): "
            "beats on this machine share it"
        )
    if not settings.redis_url:
        return database
    answers = await redis_reachable(settings.redis_url, settings.redis_probe_timeout)
    try:
        redis = RedisLeaderLease(
            settings.redis_url,
            redis_lease_name(settings.database_url, settings.database_schema),
            ttl=ttl,
            holder=holder,
        )
    except MissingExtraError:
        logger.warning("beat falls back to the database for leader election")
        return database
    if not answers:
        logger.warning("beat falls back to the database for leader election until Redis answers")
    return RedisOrDatabaseLease(
        redis,
        database,
        ttl=ttl,
        redis_answers=answers,
        timeout=min(settings.redis_probe_timeout, ttl / 6),
    )


class ClockStepWatch:
    """Tells a forward step of the wall clock from a late loop: between two readings, a step
    moves the wall clock and not the monotonic one."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._last = (clock.now(), time.monotonic())

    def forward_step(self) -> tuple[datetime, float]:
        """The wall clock's instant now, and how many seconds it stepped forward since the last
        reading (0.0: it did not)."""
        now, monotonic = self._clock.now(), time.monotonic()
        (wall_before, monotonic_before), self._last = self._last, (now, monotonic)
        ahead = (now - wall_before).total_seconds() - (monotonic - monotonic_before)
        return now, ahead if ahead > _CLOCK_STEP else 0.0


class Beat:
    """One beat process: a standby until it takes the lease, then the leader until it stops or
    loses it."""

    def __init__(
        self,
        app: App,
        *,
        holder: str | None = None,
        storage: Storage | None = None,
        module: str = "",
    ) -> None:
        self.app = app
        self.module = module  # the job module, for the worker registry
        self.settings = app.settings
        self.clock = app.clock
        self.holder = holder or default_holder()
        self.lease: LeaderLease | None = None
        self.fired = 0
        self.figures = Figures(otel.meter_sink())  # the attempts its lease rescue found lost
        self._storage = storage  # given: opened and closed by the caller
        self._stop = asyncio.Event()
        self._trusted_until = 0.0  # monotonic
        self._leading: asyncio.Task[None] | None = None
        self._term: LeaseTerm | None = None  # this process's current term, while it leads
        self._warned: set[str] = set()

    @property
    def storage(self) -> Storage:
        if self._storage is None:
            raise RuntimeError("Beat.storage used before run()")
        return self._storage

    @property
    def is_leader(self) -> bool:
        return self._leading is not None and not self._leading.done()

    def request_stop(self) -> None:
        self._stop.set()

    # Process ------------------------------------------------------------------------------

    async def run(self) -> None:
        specs = recurring_specs(self.app.registry)
        owned = self._storage is None
        storage = self._storage or self.app.create_storage()
        await storage.open()
        self._storage = storage
        try:
            await storage.schema.check_schema()
            await record_job_types(storage, self.app.registry, self.settings, self.holder)
            if not await self._register(specs):
                return
            self.lease = await choose_lease(self.app, storage, self.holder)
            # Its row in the worker registry: its id is its holder name.
            row = process_row(storage, id=self.holder, role=WorkerRole.BEAT, module=self.module)
            registration = Registration(storage, self.settings, row, figures=self._figures_if_any)
            registration.start()
            logger.info(
                "beat %s started: %d recurring definition(s) from code, leadership by %s, "
                "database=%s",
                self.holder,
                len(specs),
                self.lease.mechanism,
                redact_url(self.settings.database_url),
            )
            try:
                await self._elect()
            finally:
                await registration.cancel()
            await registration.stop()  # a clean stop: the row goes now
        finally:
            await self._step_down("beat is stopping", release=True)
            if self.lease is not None:
                with contextlib.suppress(Exception):
                    await self.lease.close()
            if owned:
                await storage.close()
        logger.info("beat %s stopped after firing %d tick(s)", self.holder, self.fired)

    async def _register(self, specs: Sequence[RecurringSpec]) -> bool:
        """The idempotent upsert every beat makes at start; retried through an outage."""
        outage = Outage("registering recurring definitions")
        while not self._stop.is_set():
            try:
                await self.storage.recurring.upsert_recurring(specs)
            except Exception as exc:
                await self._sleep(outage.failed(exc))
                continue
            outage.succeeded()
            return True
        return False

    async def _elect(self) -> None:
        """Take the lease when it is free; while it is held, renew it every third of its TTL."""
        assert self.lease is not None
        lease, ttl = self.lease, self.settings.beat_lease_ttl
        outage = Outage("taking the leader lease")
        while not self._stop.is_set():
            if not self.is_leader:
                started = time.monotonic()
                try:
                    taken = await asyncio.wait_for(lease.acquire(), ttl / 3)
                except Exception as exc:
                    outage.failed(exc)
                    taken = False
                else:
                    outage.succeeded()
                if taken and await self._defers_to_another_leader():
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(lease.release(), 5)
                    taken = False
                if taken:
                    self._trusted_until = started + ttl * _TRUST
                    self._begin_term()
                    continue
                await self._sleep(self.settings.beat_retry_interval)
                continue
            await self._sleep(ttl / 3)
            if self._stop.is_set():
                break
            started = time.monotonic()
            try:
                renewed = await asyncio.wait_for(lease.renew(), ttl / 3)
                why = "the lease was taken over or expired (this process stalled?)"
            except LeaseMoved as exc:
                renewed, why = False, str(exc)
            except Exception as exc:
                renewed, why = False, f"renewing it failed: {type(exc).__name__}: {exc}"
            if not renewed:
                await self._step_down(f"lost the leader lease: {why}")
                continue
            self._trusted_until = started + ttl * _TRUST
            self._continue_term()
            await self._heartbeat()
            other = await self._other_leader()
            if other is not None:
                await self._step_down(
                    f"beat {other.holder} leads by {other.mechanism}, a newer term than this "
                    f"one by {lease.mechanism}"
                )

    async def _other_leader(self) -> BeatLeader | None:
        """A live leader this beat's lease cannot see: another term, by another mechanism, in
        the heartbeat (beats that disagree about Redis: see docs/beat.md)."""
        assert self.lease is not None
        try:
            leader = await asyncio.wait_for(self.storage.leadership.beat_leader(BEAT_LEASE), 5)
        except Exception:
            return None
        if leader is None or leader.mechanism == self.lease.mechanism:
            return None
        if self._term is not None and leader.token == self._term.token:
            return None
        return leader

    async def _defers_to_another_leader(self) -> bool:
        other = await self._other_leader()
        if other is None:
            return False
        assert self.lease is not None
        self._warn_once(
            f"defer:{other.token}",
            f"beat {self.holder} took the lease by {self.lease.mechanism}, but beat "
            f"{other.holder} leads by {other.mechanism}: it gives the lease up and stays a "
            "standby while that term lives",
        )
        return True

    def _begin_term(self) -> None:
        term = self._term = self.lease.term if self.lease is not None else None
        if term is None:
            return
        logger.warning(
            "beat %s is the leader (by %s, since %s)",
            self.holder,
            term.mechanism,
            term.since.isoformat(timespec="seconds"),
        )
        self._leading = asyncio.create_task(self._lead(self.clock.now()), name="beat-leader")

    def _continue_term(self) -> None:
        """After a renewal that moved the lease to another mechanism: the same leader work goes
        on under the new term."""
        term = self.lease.term if self.lease is not None else None
        if term is None or self._term is None or term.token == self._term.token:
            return
        before, self._term = self._term, term
        logger.warning(
            "beat %s is the leader (by %s, since %s): its term moved from %s",
            self.holder,
            term.mechanism,
            term.since.isoformat(timespec="seconds"),
            before.mechanism,
        )

    async def _step_down(self, reason: str, *, release: bool = False) -> None:
        """Stop leader work at once (cancel it), say why, give the lease up (whatever is left of
        it) and remove this term's heartbeat."""
        task, self._leading = self._leading, None
        term, self._term = self._term, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            log = logger.info if release else logger.warning
            log("beat %s stops leader work: %s", self.holder, reason)
        if self.lease is not None and (release or term is not None):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.lease.release(), 5)
        if term is not None and self._storage is not None:
            # Workers take maintenance up again now rather than when the heartbeat expires (a
            # newer leader's heartbeat has another token and stays).
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    self._storage.leadership.clear_beat_leader(BEAT_LEASE, term.token), 5
                )

    async def _heartbeat(self) -> None:
        """Record the term in the database: workers skip maintenance while it is alive, and
        `jobworker beat --status` reads it."""
        term = self._term
        if term is None:
            return
        # On the database's clock: every process compares it with the database's time.
        expires = self.storage.clock.now() + timedelta(seconds=self.settings.beat_lease_ttl)
        try:
            await self.storage.leadership.record_beat_leader(BEAT_LEASE, term, expires)
        except Exception as exc:
            logger.debug("recording the leader heartbeat failed: %s", exc)

    def _trusted(self) -> bool:
        """Whether the lease is surely still ours (always, for `fire_due` called directly)."""
        return self.lease is None or time.monotonic() < self._trusted_until

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), max(seconds, 0.001))

    # Leader duties ------------------------------------------------------------------------

    async def _lead(self, term_started: datetime) -> None:
        await self._heartbeat()
        outage = Outage("beat's leader duties (cron, lease rescue, janitor)")
        next_rescue = next_purge = 0.0
        clock_steps = ClockStepWatch(self.clock)
        while True:
            if not self._trusted():
                # Stalled past the point where the lease is sure to be ours (a long pause, a
                # SIGSTOP): write nothing until a renewal confirms it or leadership ends.
                await asyncio.sleep(0.05)
                continue
            now, stepped = clock_steps.forward_step()
            if stepped:
                # The ticks the step passed over were never due while this leader ran: they
                # collapse into the latest, as ticks missed without a leader do.
                logger.warning(
                    "the clock stepped forward by %.1fs: the ticks it passed over collapse into "
                    "the latest",
                    stepped,
                )
                term_started = max(term_started, now)
            try:
                # The instant the step check read: a step during the reads below is seen by
                # the next pass, not taken as ticks that came due.
                wake = await self.fire_due(term_started, now)
                if time.monotonic() >= next_rescue and self._trusted():
                    next_rescue = time.monotonic() + self.settings.rescue_interval
                    await self._maintain()
                if time.monotonic() >= next_purge and self._trusted():
                    next_purge = time.monotonic() + self.settings.janitor_interval
                    await self._purge()
            except Exception as exc:
                await asyncio.sleep(outage.failed(exc))
                continue
            outage.succeeded()
            delay = self.settings.beat_tick_interval
            if wake is not None:
                delay = min(delay, (wake - self.clock.now()).total_seconds())
            await asyncio.sleep(max(delay, 0.001))

    async def fire_due(
        self, term_started: datetime, now: datetime | None = None
    ) -> datetime | None:
        """Fire every tick due at `now` (default: the clock's now); returns when the next one
        is due (None: none is known)."""
        now = self.clock.now() if now is None else now
        records = await self.storage.recurring.list_recurring()
        wake: datetime | None = None
        for record in records:
            if not record.enabled:
                continue
            try:
                todo = plan(
                    record, now, lookback=self.settings.cron_lookback, term_started=term_started
                )
            except ValueError as exc:
                self._warn_once(record.name, f"recurring job {record.name!r} is skipped: {exc}")
                continue
            if todo is None:
                if record.next_fire_at is not None:
                    wake = record.next_fire_at if wake is None else min(wake, record.next_fire_at)
                continue
            if todo.skipped or todo.expired:
                logger.info(
                    "recurring job %s missed %d fire(s)%s while no leader ran; firing only the "
                    "latest within the look-back",
                    record.name,
                    todo.skipped,
                    " (and older ones beyond the look-back)" if todo.expired else "",
                )
            if not todo.fire:
                await self.storage.recurring.advance_recurring(record.name, todo.next_fire_at)
            for instant in todo.fire:
                if not self._trusted():
                    return None
                if not await self._fire(record, instant):
                    break
            wake = todo.next_fire_at if wake is None else min(wake, todo.next_fire_at)
        return wake

    async def _fire(self, record: RecurringJob, instant: datetime) -> bool:
        """Enqueue one tick; False if the definition cannot be fired (it was warned about)."""
        registry = self.app.registry
        if record.job_type not in registry:
            self._warn_once(
                record.name,
                f"recurring job {record.name!r} runs job {record.job_type!r}, which this beat's "
                "module does not define; it is not fired",
            )
            return False
        arguments: dict[str, Any] = msgspec.json.decode(record.args)
        try:
            [job] = build_jobs(
                registry.get(record.job_type),
                [arguments],
                ScheduleOptions(idempotency_key=fire_key(record.name, instant)),
                self.settings,
                self.clock.now(),
            )
        except (JobArgumentsError, UnknownJobError, ConfigurationError) as exc:
            self._warn_once(record.name, f"recurring job {record.name!r} is not fired: {exc}")
            return False
        next_fire = record.schedule().next_fire(instant)
        with tracing.sending([job], recurring=record.name) as carried:  # a trace per fire
            if carried is not None:
                job = msgspec.structs.replace(job, trace_context=carried)
            result = await self.storage.recurring.fire_recurring(
                record.name, instant, next_fire, job
            )
        if result is None:
            logger.debug("recurring job %s at %s was already fired", record.name, instant)
        else:
            self.fired += 1
            logger.info(
                "fired recurring job %s for %s: job %s",
                record.name,
                instant.isoformat(),
                result.job_id,
            )
        return True

    async def _maintain(self) -> None:
        await rescue_expired_leases(self.storage, self.settings, lost=self.figures.attempt_lost)
        await settle_continuations(self.storage)
        await mark_stale_workers(self.storage, self.settings)

    async def _purge(self) -> None:
        await purge(self.storage, self.settings, self.storage.clock, self._trusted)

    def _figures_if_any(self) -> str | None:
        """Its figures (the attempts it found lost) for its registry row, once it has some."""
        return self.figures.encoded() if self.figures.recorded else None

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(message)
