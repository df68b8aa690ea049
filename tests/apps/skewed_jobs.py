"""The jobs of proc_jobs, served by a process whose wall clock is off by SKEW_SECONDS (a host
clock that is behind, or was stepped forward): every `SystemClock` of the process reads it."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from proc_jobs import *  # noqa: F403 - the same jobs, registered once

from jobworker.clock import SystemClock

_SKEW = timedelta(seconds=float(os.environ.get("SKEW_SECONDS", "0")))


def _skewed_now(self: SystemClock) -> datetime:
    return datetime.now(UTC) + _SKEW


SystemClock.now = _skewed_now  # type: ignore[method-assign]
