"""The end of an attempt, written once for the two ways it ends: a worker's outcome
(`complete`), and a lease that ends without one (`end_leases`: given back by a draining worker,
lost by a dead one, expired). Each change is fenced by the attempt's identity (the job, its
lease owner and attempt number): an attempt that no longer holds its lease changes nothing.

The attempt's row records the numbers of its `running` event and of the lifecycle event that
ended it, with what that event says; reading a job's events derives both from it.
Called inside the caller's write transaction."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from jobworker.models import AttemptOutcome, Completion, JobEvent, JobStatus
from jobworker.storage.base import lifecycle_event, outcome_row
from jobworker.storage.sqlite.connection import Params, Session
from jobworker.storage.sqlite.values import from_timestamp
from jobworker.storage.sqlite.writes import after_parent_ended

__all__ = ["complete", "end_event", "end_leases"]

logger = logging.getLogger("jobworker.storage.sqlite")

# The statement that ends the attempt, by outcome; each returns the job's status, attempt,
# event_seq, error and run_at after it (what its end's lifecycle event says).
_STATEMENTS = {
    AttemptOutcome.SUCCEEDED: "complete_succeeded",
    AttemptOutcome.FAILED: "complete_failed",
    AttemptOutcome.DEAD: "complete_dead",
    AttemptOutcome.RELEASED: "released_to_queued",
    AttemptOutcome.CANCELLED: "complete_cancelled",
}
_ENDS_JOB = {
    AttemptOutcome.SUCCEEDED: JobStatus.SUCCEEDED,
    AttemptOutcome.DEAD: JobStatus.DEAD,
    AttemptOutcome.CANCELLED: JobStatus.CANCELLED,
}


def _record(
    session: Session, attempt: dict[str, Any], start_seq: int, ended: Sequence[Any]
) -> None:
    """The attempt's row, with its `running` event's number and its end's lifecycle event
    (`ended`: the job's status, attempt, event_seq, error and run_at after it)."""
    status, number, seq, error, run_at = ended
    session.execute(
        "insert_attempt",
        {
            **attempt,
            "start_seq": start_seq,
            "end_seq": seq,
            "end_status": status,
            "end_attempt": number,
            "end_error": error,
            "end_run_at": run_at,
        },
    )


def complete(
    session: Session, item: Completion, now: float, default_ttl: float
) -> Sequence[Any] | None:
    """Apply a worker's outcome; what the job is after it (its status, attempt, event_seq,
    error and run_at), or None if the lease was lost."""
    row = outcome_row(item, default_ttl)
    params = {
        "id": str(item.job_id),
        "owner": item.lease_owner,
        "attempt": item.attempt,
        "now": now,
        "result": row.result,
        "error": row.error,
        "traceback": row.traceback,
        "retry_at": row.retry_at.timestamp() if row.retry_at else None,
        "result_ttl": row.result_ttl,
        "event_seq": item.event_seq,
    }
    ends_as = _ENDS_JOB.get(row.outcome)
    start_seq = item.start_seq
    if row.outcome is not AttemptOutcome.SUCCEEDED or not start_seq:
        found = session.one("job_status", params)
        if found is not None:
            start_seq = start_seq or found[2]
            if found[1] and row.outcome is not AttemptOutcome.SUCCEEDED:
                # Its cancellation was requested: it ends cancelled, whatever the attempt did
                # short of succeeding, with the requested reason.
                ends_as = JobStatus.CANCELLED
    statement = "complete_cancelled" if ends_as is JobStatus.CANCELLED else _STATEMENTS[row.outcome]
    ended = session.one(statement, params)
    if ended is None:
        logger.info("dropping the outcome of job %s: lease lost", item.job_id)
        return None
    attempt = {
        "job_id": str(item.job_id),
        "attempt": item.attempt,
        "worker": item.lease_owner,
        "started_at": item.started_at.timestamp(),
        "ended_at": item.ended_at.timestamp(),
        "outcome": row.outcome.value,
        "error": row.error,
        "traceback": row.traceback,
    }
    _record(session, attempt, start_seq, ended)
    if ends_as is not None:
        after_parent_ended(session, str(item.job_id), ends_as, now, default_ttl)
    return ended


def end_event(item: Completion, ended: Sequence[Any]) -> JobEvent:
    """The lifecycle event of an outcome's end, as `complete` returned it."""
    status, attempt, seq, error, run_at = ended
    return lifecycle_event(
        item.job_id, seq, item.ended_at, JobStatus(status), attempt, error, from_timestamp(run_at)
    )


def _lease_end(
    lost: bool, cancel_requested: bool, attempt: int, max_attempts: int
) -> tuple[str, AttemptOutcome, JobStatus | None]:
    """How a lease that ends without an outcome ends the attempt: the statement, the attempt's
    outcome, and the job's end if it ends."""
    if cancel_requested:
        # It was asked to stop: whatever ended the lease, it is not run again.
        return "complete_cancelled", AttemptOutcome.CANCELLED, JobStatus.CANCELLED
    if not lost:
        return "released_to_queued", AttemptOutcome.RELEASED, None
    if attempt >= max_attempts:
        return "lost_to_dead", AttemptOutcome.LOST, JobStatus.DEAD
    return "lost_to_queued", AttemptOutcome.LOST, None


def end_leases(
    session: Session,
    selector: str,
    params: Params,
    *,
    lost: bool,
    reason: str,
    seq_floors: Mapping[str, int],
    now: float,
    default_ttl: float,
) -> int:
    """End the leases the `selector` statement finds (see `Jobs.release_owner`); returns how
    many ended. `seq_floors`: per job id, the last event number used outside the database."""
    ended = 0
    for job_id, attempt, max_attempts, owner, started_at, cancel_requested, seq in session.all(
        selector, params
    ):
        error = f"{reason} (worker {owner})"
        statement, outcome, ends_as = _lease_end(lost, cancel_requested, attempt, max_attempts)
        update = {
            "id": job_id,
            "owner": owner,
            "attempt": attempt,
            "now": now,
            "event_seq": seq_floors.get(job_id, 0),
            "error": "cancelled" if ends_as is JobStatus.CANCELLED else error,
            "result_ttl": default_ttl,
        }
        changed = session.one(statement, update)
        if changed is None:
            continue
        ended += 1
        record = {
            "job_id": job_id,
            "attempt": attempt,
            "worker": owner,
            "started_at": started_at if started_at is not None else now,
            "ended_at": now,
            "outcome": outcome.value,
            "error": error,
            "traceback": None,
        }
        _record(session, record, seq, changed)
        if ends_as is not None:
            after_parent_ended(session, job_id, ends_as, now, default_ttl)
    return ended
