"""Cron expressions and time zones, checked when a job is declared (beat fires them later).

Five fields (minute hour day-of-month month day-of-week), or six with the seconds first
(`*/10 * * * * *`: every ten seconds), as croniter parses them.
"""

from __future__ import annotations

import zoneinfo

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
    return None


def timezone_error(name: str) -> str | None:
    """Why `name` is not an IANA time zone this machine knows, or None if it is."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        return f"unknown time zone {name!r} (use an IANA name such as 'Europe/Amsterdam')"
    return None
