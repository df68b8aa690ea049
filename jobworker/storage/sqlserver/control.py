"""The control role: what an operator does to jobs and queues. The status changes it makes
(a cancel, a retry, continuations settled) are stored as events in the same transaction."""

from __future__ import annotations

import uuid

from jobworker.clock import Clock
from jobworker.errors import InvalidJobStateError, JobNotFoundError
from jobworker.models import CancelResult
from jobworker.storage.sqlserver.queries import Queries
from jobworker.storage.sqlserver.values import ts
from jobworker.storage.sqlserver.writes import EventWriter

__all__ = ["SQLServerControl"]


class SQLServerControl:
    def __init__(
        self, queries: Queries, writer: EventWriter, clock: Clock, result_ttl: float
    ) -> None:
        self._queries = queries
        self._writer = writer
        self._clock = clock
        self._result_ttl = result_ttl

    async def cancel(self, job_id: uuid.UUID, reason: str) -> CancelResult:
        [(status, cancelled, requested)] = await self._writer.run_changing(
            "cancel",
            self._clock.now(),
            retry=False,
            id=str(job_id),
            reason=reason,
            default_ttl=self._result_ttl,
        )
        if status is None:
            raise JobNotFoundError(job_id)
        if cancelled:
            return CancelResult.CANCELLED
        return CancelResult.REQUESTED if requested else CancelResult.FINISHED

    async def retry_job(self, job_id: uuid.UUID) -> None:
        [(status, retried)] = await self._writer.run_changing(
            "retry_dead", self._clock.now(), retry=False, id=str(job_id)
        )
        if status is None:
            raise JobNotFoundError(job_id)
        if not retried:
            raise InvalidJobStateError(job_id, status, "only dead jobs can be retried")

    async def delete_job(self, job_id: uuid.UUID) -> None:
        [(status, deleted)] = await self._writer.run_changing(
            "delete_job",
            self._clock.now(),
            retry=False,
            id=str(job_id),
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
