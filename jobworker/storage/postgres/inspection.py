"""The inspection role on PostgreSQL: reading jobs, attempts and queues."""

from __future__ import annotations

import uuid

from jobworker.clock import Clock
from jobworker.config import Settings
from jobworker.models import AttemptRecord, JobFilter, JobRecord, JobStatus, QueueInfo
from jobworker.storage import rows
from jobworker.storage.listing import search_of
from jobworker.storage.postgres.connection import VALUES, Database


class PostgresInspection:
    def __init__(self, db: Database, settings: Settings, clock: Clock) -> None:
        self._db = db

    async def get(self, job_id: uuid.UUID) -> JobRecord | None:
        row = await self._db.fetchrow("get_job", job_id)
        return None if row is None else rows.job_record(row, VALUES)

    async def list_jobs(
        self, filter: JobFilter, *, limit: int = 50, offset: int = 0
    ) -> rows.JobRecords:
        search = search_of(filter)
        found = await self._db.fetch(
            "list_jobs",
            status=filter.status.value if filter.status else None,
            kind=filter.kind.value if filter.kind else None,
            job_type=filter.job_type,
            queue=filter.queue,
            idempotency_key=filter.idempotency_key,
            search_types=search.types,
            search_ids=search.ids,
            before=filter.before,
            limit=limit,
            offset=offset,
        )
        return rows.job_records(found, VALUES)

    async def count_by_status(self) -> dict[JobStatus, int]:
        return rows.status_counts(await self._db.fetch("count_by_status"))

    async def attempts(self, job_id: uuid.UUID) -> list[AttemptRecord]:
        found = await self._db.fetch("list_attempts", job_id)
        return [rows.attempt_record(row, VALUES) for row in found]

    async def queues(self) -> list[QueueInfo]:
        counts = await self._db.fetch("queue_counts")
        return rows.queue_infos(counts, await self._db.fetch("queue_states"))

    async def paused_queues(self) -> set[str]:
        return {row[0] for row in await self._db.fetch("paused_queues")}
