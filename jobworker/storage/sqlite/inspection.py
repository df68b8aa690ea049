"""Reading jobs, attempts and queues."""

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
from jobworker.storage.sqlite.connection import Database, Row, Session
from jobworker.storage.sqlite.values import VALUES

__all__ = ["SQLiteInspection"]


class SQLiteInspection:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, job_id: uuid.UUID) -> JobRecord | None:
        row = await self._db.read(lambda session: session.one("get_job", {"id": str(job_id)}))
        return None if row is None else job_record(row, VALUES)

    async def list_jobs(
        self,
        filter: JobFilter,
        *,
        limit: int = 50,
        offset: int = 0,
        scan_limit: int | None = None,
    ) -> JobRecords:
        params = {**filter_params(filter), "limit": limit, "offset": offset}
        if scan_limit is None:
            rows = await self._db.read(lambda session: session.all("list_jobs", params))
            return job_records(rows, VALUES)

        def walk(session: Session) -> tuple[list[Row], uuid.UUID | None]:
            found = session.all("list_jobs_walk", {**params, "scan_limit": scan_limit})
            if len(found) >= limit:
                return found, None
            edge = session.one("walk_edge", {"before": params["before"], "skip": scan_limit - 1})
            return found, None if edge is None else uuid.UUID(edge[0])

        found, edge = await self._db.snapshot(walk)
        records = job_records(found, VALUES)
        records.scan_edge = edge
        return records

    async def count_by_status(self) -> dict[JobStatus, int]:
        return status_counts(await self._db.read(lambda session: session.all("count_by_status")))

    async def overview(self, exact_up_to: int) -> JobCounts:
        """Exact: SQLite counts through jobs_status_queue (an index scan, not the rows)."""

        def read(session: Session) -> JobCounts:
            counts = status_counts(session.all("count_by_status"))
            queues = queue_infos(session.all("queue_counts"), session.all("queue_states"))
            return JobCounts(counts=counts, queues=queues)

        return await self._db.snapshot(read)

    async def throughput(
        self, since: datetime, until: datetime, bucket_seconds: int
    ) -> list[tuple[int, str, int]]:
        params = {
            "since": since.timestamp(),
            "until": until.timestamp(),
            "bucket": float(bucket_seconds),
        }
        rows = await self._db.read(lambda session: session.all("throughput", params))
        return [(int(bucket), str(outcome), int(n)) for bucket, outcome, n in rows]

    async def attempts(self, job_id: uuid.UUID) -> list[AttemptRecord]:
        params = {"job_id": str(job_id)}
        rows = await self._db.read(lambda session: session.all("list_attempts", params))
        return [attempt_record(row, VALUES) for row in rows]

    async def queues(self) -> list[QueueInfo]:
        def read(session: Session) -> list[QueueInfo]:
            return queue_infos(session.all("queue_counts"), session.all("queue_states"))

        return await self._db.read(read)

    async def paused_queues(self) -> set[str]:
        rows = await self._db.read(lambda session: session.all("paused_queues"))
        return {row[0] for row in rows}
