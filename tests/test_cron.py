"""Next-fire maths: wall-clock cron in a time zone, and daylight-saving changes."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from jobworker import App, ConfigurationError, DefinitionError, JobContext
from jobworker.cron import CronSchedule, cron_error


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_daily_in_a_time_zone() -> None:
    schedule = CronSchedule("0 2 * * *", "Europe/Amsterdam")
    # Winter: 02:00 CET is 01:00 UTC; summer: 02:00 CEST is 00:00 UTC.
    assert schedule.next_fire(utc(2026, 1, 10, 12)) == utc(2026, 1, 11, 1)
    assert schedule.next_fire(utc(2026, 7, 10, 12)) == utc(2026, 7, 11, 0)


def test_next_fire_is_strictly_after() -> None:
    schedule = CronSchedule("*/15 * * * *")
    assert schedule.next_fire(utc(2026, 1, 1, 10, 0)) == utc(2026, 1, 1, 10, 15)
    assert schedule.next_fire(utc(2026, 1, 1, 10, 0, 0, 1)) == utc(2026, 1, 1, 10, 15)
    assert schedule.next_fire(utc(2026, 1, 1, 10, 14, 59)) == utc(2026, 1, 1, 10, 15)


def test_six_fields_have_the_seconds_first() -> None:
    schedule = CronSchedule("*/10 * * * * *")
    start = utc(2026, 1, 1, 10, 0, 0)
    assert schedule.fires_between(start, start + timedelta(minutes=1)) == [
        start + timedelta(seconds=s) for s in (10, 20, 30, 40, 50, 60)
    ]


def test_spring_forward_a_skipped_time_fires_once_at_the_jump() -> None:
    # Europe/Amsterdam, 29 March 2026: clocks jump from 02:00 CET to 03:00 CEST (01:00 UTC).
    schedule = CronSchedule("30 2 * * *", "Europe/Amsterdam")
    fires = schedule.fires_between(utc(2026, 3, 27, 12), utc(2026, 3, 31, 12))
    assert fires == [
        utc(2026, 3, 28, 1, 30),  # 02:30 CET
        utc(2026, 3, 29, 1, 0),  # 02:30 does not exist: 03:00 CEST, the moment of the jump
        utc(2026, 3, 30, 0, 30),  # 02:30 CEST
        utc(2026, 3, 31, 0, 30),
    ]


def test_fall_back_a_repeated_time_fires_once_at_its_first_occurrence() -> None:
    # Europe/Amsterdam, 25 October 2026: clocks go back from 03:00 CEST to 02:00 CET (01:00 UTC),
    # so 02:30 happens at 00:30 UTC and again at 01:30 UTC.
    schedule = CronSchedule("30 2 * * *", "Europe/Amsterdam")
    fires = schedule.fires_between(utc(2026, 10, 24, 12), utc(2026, 10, 26, 12))
    assert fires == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]
    # Asked from inside the repeated hour, it does not fire the second occurrence.
    assert schedule.next_fire(utc(2026, 10, 25, 1, 15)) == utc(2026, 10, 26, 1, 30)


def test_hourly_jobs_across_both_changes_never_repeat_an_instant() -> None:
    schedule = CronSchedule("0 * * * *", "Europe/Amsterdam")
    for start in (utc(2026, 3, 28, 20), utc(2026, 10, 24, 20)):
        fires = schedule.fires_between(start, start + timedelta(hours=12))
        assert fires == sorted(set(fires))
        assert all(b - a >= timedelta(hours=1) for a, b in itertools.pairwise(fires))


@pytest.mark.parametrize(
    ("expression", "zone", "message"),
    [("0 25 * * *", "UTC", "does not parse"), ("0 2 * * *", "Nowhere/Else", "unknown time zone")],
)
def test_bad_schedules_are_clear_errors(expression: str, zone: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CronSchedule(expression, zone)


def test_naive_instants_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        CronSchedule("0 2 * * *").next_fire(datetime(2026, 1, 1))


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("*/61 * * * *", "step 61 in the minute field"),
        ("0 */25 * * *", "step 25 in the hour field"),
        ("0 0 */32 * *", "step 32 in the day-of-month field"),
        ("0 0 1 */13 *", "step 13 in the month field"),
        ("0 0 * * */8", "step 8 in the day-of-week field"),
        ("*/61 * * * * *", "step 61 in the second field"),
        ("5/70 * * * *", "step 70 in the minute field"),
        ("0,10-20/99 * * * *", "step 99 in the minute field"),
    ],
)
def test_steps_beyond_their_field_are_errors(expression: str, message: str) -> None:
    """croniter accepts these and fires them at surprising times (`*/61` hourly); a step larger
    than the field's span of values is a mistake, refused where the schedule is declared."""
    with pytest.raises(ValueError, match=message):
        CronSchedule(expression)
    assert message in (cron_error(expression) or "")


@pytest.mark.parametrize(
    "expression", ["*/60 * * * *", "0 */24 * * *", "0 0 */31 * *", "0 0 1 */12 *", "0 0 * * */7"]
)
def test_steps_up_to_their_fields_span_stay_valid(expression: str) -> None:
    assert cron_error(expression) is None


def test_an_out_of_range_step_is_refused_at_job_and_at_schedule_recurring(app: App) -> None:
    with pytest.raises(DefinitionError, match="step 61 in the minute field"):

        @app.registry.job(name="too-often", kind="system", cron="*/61 * * * *")
        def too_often(ctx: JobContext) -> None: ...

    @app.registry.job(name="nightly")
    def nightly(ctx: JobContext) -> None: ...

    with pytest.raises(ConfigurationError, match="step 25 in the hour field"):
        app.client.schedule_recurring("nightly-ish", "0 */25 * * *", nightly)
    assert app.client.list_recurring() == []
