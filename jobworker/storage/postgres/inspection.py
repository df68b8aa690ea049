"""The inspection role on PostgreSQL: reading jobs, attempts and queues."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from jobworker.clock import Clock
from jobworker.config import Settings
from jobworker.models import (
    AttemptRecord,
    JobCounts,
    JobFilter,
    JobKind,
    JobRecord,
    JobStatus,
    QueueInfo,
)
from jobworker.storage import rows
from jobworker.storage.listing import filter_params
from jobworker.storage.postgres.connection import VALUES, Database
from jobworker.storage.postgres.overview import INDEXED_STATUSES, overview_counts


class PostgresInspection:
    def __init__(self, db: Database, settings: Settings, clock: Clock) -> None:
        self._db = db
        self._schema = settings.database_schema

    async def get(self, job_id: uuid.UUID) -> JobRecord | None:
        row = await self._db.fetchrow("get_job", job_id)
        return None if row is None else rows.job_record(row, VALUES)

    async def list_jobs(
        self,
        filter: JobFilter,
        *,
        limit: int = 50,
        offset: int = 0,
        scan_limit: int | None = None,
    ) -> rows.JobRecords:
        params: dict[str, Any] = {
            **filter_params(filter, before=lambda bound: bound),
            "limit": limit,
            "offset": offset,
        }
        if scan_limit is None:
            return rows.job_records(await self._db.fetch("list_jobs", **params), VALUES)
        walk = _walk_filters(filter)
        async with (
            self._db.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
            found = await self._db.fetch(
                "list_jobs_walk", conn=conn, scan_limit=scan_limit, **params, **walk
            )
            edge = None
            if len(found) < limit:  # the walk ran out: of rows, or of its budget
                edge = await self._db.fetchval(
                    "walk_edge", conn=conn, before=filter.before, skip=scan_limit - 1, **walk
                )
        records = rows.job_records(found, VALUES)
        records.scan_edge = edge
        return records

    async def count_by_status(self) -> dict[JobStatus, int]:
        return rows.status_counts(await self._db.fetch("count_by_status"))

    async def overview(self, exact_up_to: int) -> JobCounts:
        return await overview_counts(self._db, self._schema, exact_up_to)

    async def throughput(
        self, since: datetime, until: datetime, bucket_seconds: int
    ) -> list[tuple[int, str, int]]:
        found = await self._db.fetch("throughput", since, until, float(bucket_seconds))
        return [(bucket, outcome, n) for bucket, outcome, n in found]

    async def attempts(self, job_id: uuid.UUID) -> list[AttemptRecord]:
        found = await self._db.fetch("list_attempts", job_id)
        return [rows.attempt_record(row, VALUES) for row in found]

    async def queues(self) -> list[QueueInfo]:
        counts = await self._db.fetch("queue_counts")
        return rows.queue_infos(counts, await self._db.fetch("queue_states"))

    async def paused_queues(self) -> set[str]:
        return {row[0] for row in await self._db.fetch("paused_queues")}


def _walk_filters(filter: JobFilter) -> dict[str, Any]:
    """The filters a bounded listing walks an index by: those a partial index serves (a status
    of jobs_attention or jobs_leases, system jobs, an idempotency key); with none, it walks the
    primary key."""
    status = filter.status if filter.status in INDEXED_STATUSES else None
    return {
        "walk_status": status.value if status else None,
        "walk_kind": JobKind.SYSTEM.value if filter.kind is JobKind.SYSTEM else None,
        "walk_idempotency_key": filter.idempotency_key,
    }
