"""Recurring definitions and which of their cron fires are due: pure values and arithmetic.

Beat stores each definition in `recurring_jobs` and fires it by moving `last_fire_at` forward
with a compare-and-set in the same transaction that enqueues the tick's job, so one scheduled
instant is enqueued at most once, whoever leads and whatever happened to the job since.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec

from jobworker.cron import CronSchedule, cron_error, timezone_error
from jobworker.errors import ConfigurationError

BEAT_LEASE = "beat"  # the leadership every beat process of one database competes for


class RecurringSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A recurring definition as declared (by `@job(cron=...)` or `schedule_recurring`)."""

    name: str
    job_type: str
    cron: str
    timezone: str = "UTC"
    args: bytes = b"{}"


class RecurringJob(msgspec.Struct, frozen=True, kw_only=True):
    """A stored recurring definition with its firing state.

    `next_fire_at` None means "not scheduled yet": beat schedules it from the current time
    (after registration, a cron change, or being enabled again) without catching up.
    """

    name: str
    job_type: str
    cron: str
    timezone: str
    args: bytes
    enabled: bool
    last_fire_at: datetime | None
    next_fire_at: datetime | None
    updated_at: datetime

    def schedule(self) -> CronSchedule:
        return CronSchedule(self.cron, self.timezone)


class BeatLeader(msgspec.Struct, frozen=True, kw_only=True):
    """The beat leader's current term as it records it in the database at every renewal."""

    holder: str
    mechanism: str
    since: datetime
    token: str
    renewed_at: datetime
    expires_at: datetime


class BeatStatus(msgspec.Struct, frozen=True, kw_only=True):
    """What `jobworker beat --status` shows: who leads (None: no live leader) and every
    definition, with `next_fire_at` computed from now for those not scheduled yet."""

    leader: BeatLeader | None
    recurring: list[RecurringJob]


def check_schedule(cron: str, timezone: str) -> CronSchedule:
    """The schedule, or a ConfigurationError that says what is wrong with it."""
    problem = cron_error(cron) or timezone_error(timezone)
    if problem:
        raise ConfigurationError(problem)
    return CronSchedule(cron, timezone)


def fire_key(name: str, instant: datetime) -> str:
    """The idempotency key of one tick: the definition and its scheduled instant in UTC."""
    return f"cron:{name}:{instant.isoformat(timespec='microseconds')}"


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    """What to do about one definition now: fire these instants (oldest first), then expect the
    next fire at `next_fire_at`. `skipped` counts missed fires within the look-back that are not
    enqueued; `expired` says some fell due even before the look-back."""

    fire: list[datetime]
    next_fire_at: datetime
    skipped: int = 0
    expired: bool = False


def plan(
    record: RecurringJob,
    now: datetime,
    *,
    lookback: float,
    term_started: datetime,
) -> Plan | None:
    """The fires of `record` that are due at `now`, or None if none is.

    Fires due since this leader took over (`term_started`) are each enqueued. Fires that fell
    due earlier, while no leader ran, collapse into one: the latest of them, and only if it is
    within `lookback` seconds of now.
    """
    schedule = record.schedule()
    if record.next_fire_at is None:
        return Plan(fire=[], next_fire_at=schedule.next_fire(now))
    if record.next_fire_at > now:
        return None
    floor = now - timedelta(seconds=lookback)
    # next_fire_at is the first fire not yet enqueued: start just before it.
    start = max(record.next_fire_at - timedelta(microseconds=1), floor)
    if record.last_fire_at is not None:
        start = max(start, record.last_fire_at)
    due = schedule.fires_between(start, now) if start < now else []
    expired = record.next_fire_at < floor
    if not due:
        return Plan(fire=[], next_fire_at=schedule.next_fire(now), expired=expired)
    missed = [instant for instant in due if instant < term_started]
    fire = due[len(missed) :]
    if missed:
        fire.insert(0, missed[-1])
    return Plan(
        fire=fire,
        next_fire_at=schedule.next_fire(due[-1]),
        skipped=max(len(missed) - 1, 0),
        expired=expired,
    )
