"""The job-type catalogue on PostgreSQL: a row per job type a worker or beat has declared."""

from __future__ import annotations

from collections.abc import Sequence

from jobworker.clock import Clock
from jobworker.models import JobType, JobTypeSpec
from jobworker.storage.database_clock import keep_synced
from jobworker.storage.postgres.connection import VALUES, Database
from jobworker.storage.type_rows import job_type

__all__ = ["PostgresCatalogue"]


class PostgresCatalogue:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def upsert_types(self, specs: Sequence[JobTypeSpec], seen_by: str) -> None:
        if not specs:
            return
        await keep_synced(self._clock)
        ordered = sorted(specs, key=lambda spec: spec.name)
        await self._db.execute(
            "upsert_job_types",
            names=[spec.name for spec in ordered],
            kinds=[spec.kind.value for spec in ordered],
            display_names=[spec.display_name for spec in ordered],
            descriptions=[spec.description for spec in ordered],
            icons=[spec.icon for spec in ordered],
            queues=[spec.queue for spec in ordered],
            priorities=[spec.priority for spec in ordered],
            max_attempts=[spec.max_attempts for spec in ordered],
            crons=[spec.cron for spec in ordered],
            timezones=[spec.timezone for spec in ordered],
            is_async=[spec.is_async for spec in ordered],
            args_schemas=[spec.args_schema for spec in ordered],
            modules=[spec.module for spec in ordered],
            seen_by=seen_by,
            now=self._clock.now(),
        )

    async def list_types(self) -> list[JobType]:
        return [job_type(row, VALUES) for row in await self._db.fetch("list_job_types")]
