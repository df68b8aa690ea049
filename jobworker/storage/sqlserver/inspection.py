"""The inspection role: reading jobs, attempts and queues."""

from __future__ import annotations

import uuid

from jobworker.models import AttemptRecord, JobFilter, JobRecord, JobStatus, QueueInfo
from jobworker.storage.listing import search_of
from jobworker.storage.rows import (
    JobRecords,
    attempt_record,
    job_record,
    job_records,
    queue_infos,
    status_counts,
)
from jobworker.storage.sqlserver.connection import Session
from jobworker.storage.sqlserver.queries import Queries
from jobworker.storage.sqlserver.values import VALUES, json

__all__ = ["SQLServerInspection"]


class SQLServerInspection:
    def __init__(self, queries: Queries) -> None:
        self._queries = queries

    async def get(self, job_id: uuid.UUID) -> JobRecord | None:
        rows = await self._queries.rows("get_job", id=str(job_id))
        return job_record(rows[0], VALUES) if rows else None

    async def list_jobs(self, filter: JobFilter, *, limit: int = 50, offset: int = 0) -> JobRecords:
        if limit <= 0:
            return JobRecords()
        search = search_of(filter)
        wanted = {
            "status": filter.status.value if filter.status else None,
            "kind": filter.kind.value if filter.kind else None,
            "job_type": filter.job_type,
            "queue": filter.queue,
            "idempotency_key": filter.idempotency_key,
            "search_types": search.types,
            "search_ids": search.ids,
            "before": str(filter.before) if filter.before else None,
        }
        rows = await self._queries.rows(
            "list_jobs", filter=json(wanted), limit=limit, offset=max(offset, 0)
        )
        return job_records(rows, VALUES)

    async def count_by_status(self) -> dict[JobStatus, int]:
        return status_counts(await self._queries.rows("count_by_status"))

    async def attempts(self, job_id: uuid.UUID) -> list[AttemptRecord]:
        rows = await self._queries.rows("list_attempts", job_id=str(job_id))
        return [attempt_record(row, VALUES) for row in rows]

    async def queues(self) -> list[QueueInfo]:
        def read(session: Session) -> list[QueueInfo]:
            counts = self._queries.fetch(session, "queue_counts")
            states = self._queries.fetch(session, "queue_states")
            return queue_infos(counts, states)

        return await self._queries.run(read)

    async def paused_queues(self) -> set[str]:
        return {row[0] for row in await self._queries.rows("paused_queues")}
