"""The control role: what an operator does to jobs and queues."""

from __future__ import annotations

import uuid

from jobworker.clock import Clock
from jobworker.errors import InvalidJobStateError, JobNotFoundError
from jobworker.models import CancelResult
from jobworker.storage.sqlserver.queries import Queries
from jobworker.storage.sqlserver.values import ts

__all__ = ["SQLServerControl"]


class SQLServerControl:
    def __init__(self, queries: Queries, clock: Clock, result_ttl: float) -> None:
        self._queries = queries
        self._clock = clock
        self._result_ttl = result_ttl

    async def cancel(self, job_id: uuid.UUID, reason: str) -> CancelResult:
        status, cancelled, requested = await self._queries.row(
            "cancel",
            retry=False,
            id=str(job_id),
            reason=reason,
            now=ts(self._clock.now()),
            default_ttl=self._result_ttl,
        )
        if status is None:
            raise JobNotFoundError(job_id)
        if cancelled:
            return CancelResult.CANCELLED
        return CancelResult.REQUESTED if requested else CancelResult.FINISHED

    async def retry_job(self, job_id: uuid.UUID) -> None:
        status, retried = await self._queries.row(
            "retry_dead", retry=False, id=str(job_id), now=ts(self._clock.now())
        )
        if status is None:
            raise JobNotFoundError(job_id)
        if not retried:
            raise InvalidJobStateError(job_id, status, "only dead jobs can be retried")

    async def delete_job(self, job_id: uuid.UUID) -> None:
        status, deleted = await self._queries.row(
            "delete_job",
            retry=False,
            id=str(job_id),
            now=ts(self._clock.now()),
            default_ttl=self._result_ttl,
        )
        if status is None:
            raise JobNotFoundError(job_id)
        if not deleted:
            raise InvalidJobStateError(job_id, status, "cancel it first")

    async def set_queue_paused(self, queue: str, paused: bool) -> None:
        await self._queries.rows(
            "set_queue_paused", queue=queue, paused=paused, now=ts(self._clock.now())
        )
