"""What an operator does to jobs and queues: cancel, retry, delete, pause."""

from __future__ import annotations

import uuid

from jobworker.clock import Clock
from jobworker.config import Settings
from jobworker.errors import InvalidJobStateError, JobNotFoundError
from jobworker.models import CancelResult, JobStatus
from jobworker.storage.sqlite.connection import Database, Session
from jobworker.storage.sqlite.writes import after_parent_ended

__all__ = ["SQLiteControl"]


def _status(session: Session, job_id: uuid.UUID) -> str:
    """The job's status; `JobNotFoundError` if there is no such job."""
    found = session.one("job_status", {"id": str(job_id)})
    if found is None:
        raise JobNotFoundError(job_id)
    return str(found[0])


class SQLiteControl:
    def __init__(self, db: Database, settings: Settings, clock: Clock) -> None:
        self._db = db
        self._settings = settings
        self._clock = clock

    async def cancel(self, job_id: uuid.UUID, reason: str) -> CancelResult:
        def cancel(session: Session) -> CancelResult:
            _status(session, job_id)
            now = self._clock.now().timestamp()
            default_ttl = self._settings.result_ttl
            params = {"id": str(job_id), "now": now, "reason": reason, "default_ttl": default_ttl}
            if session.execute("cancel_waiting", params).rowcount == 1:
                after_parent_ended(session, str(job_id), JobStatus.CANCELLED, now, default_ttl)
                return CancelResult.CANCELLED
            if session.execute("request_cancel", params).rowcount == 1:
                return CancelResult.REQUESTED
            return CancelResult.FINISHED

        return await self._db.write(cancel)

    async def retry_job(self, job_id: uuid.UUID) -> None:
        def retry(session: Session) -> None:
            status = _status(session, job_id)
            params = {"id": str(job_id), "now": self._clock.now().timestamp()}
            if session.execute("retry_dead", params).rowcount != 1:
                raise InvalidJobStateError(job_id, status, "only dead jobs can be retried")

        await self._db.write(retry)

    async def delete_job(self, job_id: uuid.UUID) -> None:
        def delete(session: Session) -> None:
            status = _status(session, job_id)
            if status == JobStatus.RUNNING:
                raise InvalidJobStateError(job_id, status, "cancel it first")
            params = {"id": str(job_id)}
            for statement in ("delete_events", "delete_attempts", "delete_job"):
                session.execute(statement, params)
            # Continuations waiting on it will never see it end: cancel them now.
            now = self._clock.now().timestamp()
            after_parent_ended(session, str(job_id), None, now, self._settings.result_ttl)

        await self._db.write(delete)

    async def set_queue_paused(self, queue: str, paused: bool) -> None:
        params = {"queue": queue, "paused": int(paused), "now": self._clock.now().timestamp()}
        await self._db.write(lambda session: session.execute("set_queue_paused", params))
