"""Cron expressions and time zones, checked when a job is declared (beat fires them later).

Five fields (minute hour day-of-month month day-of-week), or six with the seconds first
(`*/10 * * * * *`: every ten seconds), as croniter parses them, with one rule of our own: a
step (`*/N`, `A-B/N`) is at most the number of values of its field.
"""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta

from croniter import croniter


def cron_error(expression: str) -> str | None:
    """Why `expression` is not a usable cron expression, or None if it is."""
    if not isinstance(expression, str) or not expression.strip():
        return "a cron expression must be a non-empty string"
    fields = expression.split()
    if len(fields) not in (5, 6):
        return (
            f"cron expression {expression!r} has {len(fields)} fields; expected 5 "
            "(minute hour day month weekday) or 6 (seconds first)"
        )
    if not croniter.is_valid(expression, second_at_beginning=len(fields) == 6):
        return f"cron expression {expression!r} does not parse"
    names = _FIELDS if len(fields) == 6 else _FIELDS[1:]
    for text, (field, span) in zip(fields, names, strict=True):
        problem = _step_error(text, field, span)
        if problem:
            return f"cron expression {expression!r}: {problem}"
    return None


# Each field's name and how many values it spans. croniter accepts any step and reads one past
# the span as "only the first value" (`*/61` in minutes fires hourly), never what was meant.
_FIELDS = (
    ("second", 60),
    ("minute", 60),
    ("hour", 24),
    ("day-of-month", 31),
    ("month", 12),
    ("day-of-week", 7),
)


def _step_error(text: str, field: str, span: int) -> str | None:
    for part in text.split(","):
        _, slash, step = part.partition("/")
        if slash and step.isdigit() and not 1 <= int(step) <= span:
            return f"step {int(step)} in the {field} field is out of range (1-{span})"
    return None


def timezone_error(name: str) -> str | None:
    """Why `name` is not an IANA time zone this machine knows, or None if it is."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        return f"unknown time zone {name!r} (use an IANA name such as 'Europe/Amsterdam')"
    return None


class CronSchedule:
    """A cron expression in a time zone, and when it next fires.

    Expressions are read in the zone's wall-clock time. Around daylight-saving changes:
    - a time that does not exist (spring forward: 02:30 when clocks jump from 02:00 to 03:00)
      fires once, at the first wall-clock minute after the jump (03:00);
    - a time that happens twice (fall back: 02:30 when clocks return from 03:00 to 02:00) fires
      once, at its first occurrence.
    """

    def __init__(self, expression: str, timezone: str = "UTC") -> None:
        problem = cron_error(expression) or timezone_error(timezone)
        if problem:
            raise ValueError(problem)
        self.expression = expression
        self.timezone = timezone
        self._zone = zoneinfo.ZoneInfo(timezone)
        self._seconds_first = len(expression.split()) == 6

    def next_fire(self, after: datetime) -> datetime:
        """The first fire strictly after `after` (timezone-aware), in UTC."""
        if after.tzinfo is None:
            raise ValueError("next_fire needs a timezone-aware datetime")
        wall = after.astimezone(self._zone).replace(tzinfo=None)
        ticks = croniter(self.expression, wall, second_at_beginning=self._seconds_first)
        while True:
            instant = self._instant(ticks.get_next(datetime))
            if instant > after:
                return instant

    def fires_between(self, start: datetime, end: datetime) -> list[datetime]:
        """Every fire in (start, end], in UTC."""
        fires = []
        instant = self.next_fire(start)
        while instant <= end:
            fires.append(instant)
            instant = self.next_fire(instant)
        return fires

    def _instant(self, wall: datetime) -> datetime:
        """The UTC instant of a wall-clock time: its first occurrence, or, if the clocks skipped
        it, the first wall-clock minute after the jump."""
        probe = wall
        while True:
            instant = probe.replace(tzinfo=self._zone, fold=0).astimezone(UTC)
            if instant.astimezone(self._zone).replace(tzinfo=None) == probe:
                return instant
            probe = (probe + timedelta(minutes=1)).replace(second=0, microsecond=0)

    def __repr__(self) -> str:
        return f"CronSchedule({self.expression!r}, {self.timezone!r})"
