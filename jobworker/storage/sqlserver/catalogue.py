"""The job-type catalogue: a row per job type a worker or beat has declared."""

from __future__ import annotations

from collections.abc import Sequence

from jobworker.clock import Clock
from jobworker.models import JobType, JobTypeSpec
from jobworker.storage.database_clock import keep_synced
from jobworker.storage.sqlserver.queries import Queries
from jobworker.storage.sqlserver.values import VALUES, json, ts
from jobworker.storage.type_rows import job_type

__all__ = ["SQLServerCatalogue"]


class SQLServerCatalogue:
    def __init__(self, queries: Queries, clock: Clock) -> None:
        self._queries = queries
        self._clock = clock

    async def upsert_types(self, specs: Sequence[JobTypeSpec], seen_by: str) -> None:
        if not specs:
            return
        await keep_synced(self._clock)
        sent = [
            {
                "name": spec.name,
                "kind": spec.kind.value,
                "display_name": spec.display_name,
                "description": spec.description,
                "icon": spec.icon,
                "queue": spec.queue,
                "priority": spec.priority,
                "max_attempts": spec.max_attempts,
                "cron": spec.cron,
                "timezone": spec.timezone,
                "is_async": spec.is_async,
                "args_schema": spec.args_schema,
                "module": spec.module,
            }
            for spec in sorted(specs, key=lambda spec: spec.name)
        ]
        await self._queries.rows(
            "upsert_job_types", types=json(sent), seen_by=seen_by, now=ts(self._clock.now())
        )

    async def list_types(self) -> list[JobType]:
        return [job_type(row, VALUES) for row in await self._queries.rows("list_job_types")]
