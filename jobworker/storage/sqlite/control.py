"""What an operator does to jobs and queues: cancel, retry, delete, pause."""

from __future__ import annotations

import uuid

from jobworker import transitions
from jobworker.clock import Clock
from jobworker.config import Settings
from jobworker.errors import InvalidJobStateError, JobNotFoundError
from jobworker.models import CancelResult, JobStatus
from jobworker.storage.sqlite.connection import Database, Session
from jobworker.storage.sqlite.writes import after_parent_ended, change_status
from jobworker.transitions import JobState

__all__ = ["SQLiteControl"]


def _state(session: Session, job_id: uuid.UUID) -> JobState:
    """What the job's transitions depend on; `JobNotFoundError` if there is no such job."""
    found = session.one("job_state", {"id": str(job_id)})
    if found is None:
        raise JobNotFoundError(job_id)
    status, attempt, max_attempts, cancel_requested, _seq = found
    return JobState(
        status=JobStatus(status),
        attempt=attempt,
        max_attempts=max_attempts,
        cancel_requested=bool(cancel_requested),
    )


class SQLiteControl:
    def __init__(self, db: Database, settings: Settings, clock: Clock) -> None:
        self._db = db
        self._settings = settings
        self._clock = clock

    async def cancel(self, job_id: uuid.UUID, reason: str) -> CancelResult:
        def cancel(session: Session) -> CancelResult:
            decision = transitions.cancel(_state(session, job_id))
            now = self._clock.now().timestamp()
            default_ttl = self._settings.result_ttl
            params = {"id": str(job_id), "now": now, "reason": reason, "default_ttl": default_ttl}
            if decision.result is CancelResult.CANCELLED:
                change_status(session, "cancel_waiting", params)
                after_parent_ended(session, str(job_id), JobStatus.CANCELLED, now, default_ttl)
            elif decision.result is CancelResult.REQUESTED:
                session.execute("request_cancel", params)
            return decision.result

        return await self._db.write(cancel)

    async def retry_job(self, job_id: uuid.UUID) -> None:
        def retry(session: Session) -> None:
            state = _state(session, job_id)
            now = self._clock.now()
            if transitions.retry(state, now) is None:
                raise InvalidJobStateError(job_id, state.status, transitions.RETRY_REFUSED)
            change_status(session, "retry_dead", {"id": str(job_id), "now": now.timestamp()})

        await self._db.write(retry)

    async def delete_job(self, job_id: uuid.UUID) -> None:
        def delete(session: Session) -> None:
            state = _state(session, job_id)
            if not transitions.may_delete(state):
                raise InvalidJobStateError(job_id, state.status, transitions.DELETE_REFUSED)
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
