"""Rows of the job-type catalogue to `JobType`, the same for every backend: each backend's
`list_job_types` selects (name, kind, display_name, description, icon, queue, priority,
max_attempts, cron, timezone, is_async, args_schema, module, seen_by, first_seen, last_seen) and
passes how its driver's times become Python's."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jobworker.models import JobKind, JobType
from jobworker.storage.rows import Values

__all__ = ["job_type"]


def job_type(row: Sequence[Any], values: Values) -> JobType:
    return JobType(
        name=row[0],
        kind=JobKind(row[1]),
        display_name=row[2],
        description=row[3],
        icon=row[4] or None,
        queue=row[5],
        priority=int(row[6]),
        max_attempts=int(row[7]),
        cron=row[8] or None,
        timezone=row[9] or None,
        is_async=bool(row[10]),
        args_schema=row[11] or None,
        module=row[12],
        seen_by=row[13],
        first_seen=values.to_time(row[14]),
        last_seen=values.to_time(row[15]),
    )
