"""The control role on PostgreSQL: what an operator does to jobs and queues."""

from __future__ import annotations

import uuid
from typing import Any

from jobworker.clock import Clock
from jobworker.config import Settings
from jobworker.errors import InvalidJobStateError, JobNotFoundError
from jobworker.models import CancelResult
from jobworker.storage.postgres.connection import Database
from jobworker.storage.postgres.endings import Endings
from jobworker.storage.postgres.event_rows import store_changes


class PostgresControl:
    def __init__(self, db: Database, settings: Settings, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        self._result_ttl = settings.result_ttl
        self._endings = Endings(db, settings, clock)

    async def cancel(self, job_id: uuid.UUID, reason: str) -> CancelResult:
        now = self._clock.now()

        async def cancel(conn: Any) -> CancelResult | None:
            row = await self._db.fetchrow(
                "cancel",
                job_id=job_id,
                reason=reason,
                now=now,
                default_ttl=self._result_ttl,
                channel=self._db.jobs_channel,
                conn=conn,
            )
            if row is None:
                return None
            if row["id"] is None:
                return CancelResult.REQUESTED if row["requested"] else CancelResult.FINISHED
            # Cancelled while waiting: so are the continuations waiting on it, at once.
            changed = [row, *await self._endings.continuations(conn, [job_id], now)]
            await store_changes(self._db, changed, now, conn=conn)
            return CancelResult.CANCELLED

        result = await self._db.in_transaction(cancel, retry=False)
        if result is None:
            raise JobNotFoundError(job_id)
        return result

    async def retry_job(self, job_id: uuid.UUID) -> None:
        now = self._clock.now()

        async def retry(conn: Any) -> str | None:
            row = await self._db.fetchrow(
                "retry_dead", job_id, now, self._db.jobs_channel, conn=conn
            )
            if row is None:
                raise JobNotFoundError(job_id)
            if row["id"] is None:
                return str(row["found"])
            await store_changes(self._db, [row], now, conn=conn)
            return None

        refused = await self._db.in_transaction(retry, retry=False)
        if refused is not None:
            raise InvalidJobStateError(job_id, refused, "only dead jobs can be retried")

    async def delete_job(self, job_id: uuid.UUID) -> None:
        row = await self._db.fetchrow("delete_job", job_id)
        if row is None:
            raise JobNotFoundError(job_id)
        if not row[1]:
            raise InvalidJobStateError(job_id, row[0], "cancel it first")
        await self._endings.settle([job_id])  # its continuations: "parent job ... no longer exists"

    async def set_queue_paused(self, queue: str, paused: bool) -> None:
        await self._db.execute("set_queue_paused", queue, paused, self._clock.now())
