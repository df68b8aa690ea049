"""The control role on PostgreSQL: what an operator does to jobs and queues."""

from __future__ import annotations

import uuid

from jobworker.clock import Clock
from jobworker.config import Settings
from jobworker.errors import InvalidJobStateError, JobNotFoundError
from jobworker.models import CancelResult
from jobworker.storage.postgres.connection import Database
from jobworker.storage.postgres.endings import Endings


class PostgresControl:
    def __init__(self, db: Database, settings: Settings, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        self._result_ttl = settings.result_ttl
        self._endings = Endings(db, settings, clock)

    async def cancel(self, job_id: uuid.UUID, reason: str) -> CancelResult:
        row = await self._db.fetchrow(
            "cancel",
            job_id=job_id,
            reason=reason,
            now=self._clock.now(),
            default_ttl=self._result_ttl,
            channel=self._db.jobs_channel,
            retry=False,
        )
        if row is None:
            raise JobNotFoundError(job_id)
        if row[1]:
            await self._db.notify_events([job_id])
            await self._endings.settle([job_id])
            return CancelResult.CANCELLED
        return CancelResult.REQUESTED if row[2] else CancelResult.FINISHED

    async def retry_job(self, job_id: uuid.UUID) -> None:
        row = await self._db.fetchrow(
            "retry_dead", job_id, self._clock.now(), self._db.jobs_channel, retry=False
        )
        if row is None:
            raise JobNotFoundError(job_id)
        if not row[1]:
            raise InvalidJobStateError(job_id, row[0], "only dead jobs can be retried")
        await self._db.notify_events([job_id])

    async def delete_job(self, job_id: uuid.UUID) -> None:
        row = await self._db.fetchrow("delete_job", job_id)
        if row is None:
            raise JobNotFoundError(job_id)
        if not row[1]:
            raise InvalidJobStateError(job_id, row[0], "cancel it first")
        await self._endings.settle([job_id])  # its continuations: "parent job ... no longer exists"

    async def set_queue_paused(self, queue: str, paused: bool) -> None:
        await self._db.execute("set_queue_paused", queue, paused, self._clock.now())
