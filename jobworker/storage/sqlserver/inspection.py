"""The inspection role: reading jobs, attempts and queues."""

from __future__ import annotations

import uuid
from datetime import datetime

from jobworker.models import AttemptRecord, JobCounts, JobFilter, JobRecord, JobStatus, QueueInfo
from jobworker.storage.listing import filter_params
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
from jobworker.storage.sqlserver.values import VALUES, json, to_uuid, ts

__all__ = ["SQLServerInspection"]


class SQLServerInspection:
    def __init__(self, queries: Queries) -> None:
        self._queries = queries

    async def get(self, job_id: uuid.UUID) -> JobRecord | None:
        rows = await self._queries.rows("get_job", id=str(job_id))
        return job_record(rows[0], VALUES) if rows else None

    async def list_jobs(
        self,
        filter: JobFilter,
        *,
        limit: int = 50,
        offset: int = 0,
        scan_limit: int | None = None,
    ) -> JobRecords:
        if limit <= 0:
            return JobRecords()
        wanted = filter_params(filter)
        if scan_limit is None:
            rows = await self._queries.rows(
                "list_jobs", filter=json(wanted), limit=limit, offset=max(offset, 0)
            )
            return job_records(rows, VALUES)
        rows, edge = await self._queries.sets(
            "list_jobs_walk",
            filter=json(wanted),
            limit=limit,
            offset=max(offset, 0),
            scan_limit=max(scan_limit, 1),
        )
        records = job_records(rows, VALUES)
        if len(rows) < limit and edge:
            records.scan_edge = to_uuid(edge[0][0])
        return records

    async def count_by_status(self) -> dict[JobStatus, int]:
        return status_counts(await self._queries.rows("count_by_status"))

    async def overview(self, exact_up_to: int) -> JobCounts:
        """Exact (the counts of `count_by_status` and `queues`): not measured at scale here."""

        def read(session: Session) -> JobCounts:
            counts = status_counts(self._queries.fetch(session, "count_by_status"))
            queues = queue_infos(
                self._queries.fetch(session, "queue_counts"),
                self._queries.fetch(session, "queue_states"),
            )
            return JobCounts(counts=counts, queues=queues)

        return await self._queries.run(read)

    async def throughput(
        self, since: datetime, until: datetime, bucket_seconds: int
    ) -> list[tuple[int, str, int]]:
        rows = await self._queries.rows(
            "throughput", since=ts(since), until=ts(until), bucket=bucket_seconds
        )
        return [(int(bucket), str(outcome), int(n)) for bucket, outcome, n in rows]

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
