"""The end of an attempt, written once for the two ways it ends: a worker's outcome
(`complete`), and a lease that ends without one (`end_leases`: given back by a draining worker,
lost by a dead one, expired). `transitions` decides what each does; one statement writes it,
fenced by the attempt's identity (the job, its lease owner and attempt number): an attempt that
no longer holds its lease changes nothing.

The attempt's row records the numbers of its `running` event and of the lifecycle event that
ended it, with what that event says; reading a job's events derives both from it (`event_log`).
Called inside the caller's write transaction."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from jobworker import transitions
from jobworker.models import Completion, JobEvent, JobStatus, Succeeded
from jobworker.storage.base import outcome_row
from jobworker.storage.event_log import Change, end_events
from jobworker.storage.sqlite.connection import Params, Session
from jobworker.storage.sqlite.values import VALUES, json_list
from jobworker.storage.sqlite.writes import after_parent_ended
from jobworker.transitions import ErrorEffect, JobState, Transition

__all__ = ["complete", "end_leases"]

logger = logging.getLogger("jobworker.storage.sqlite")


def _state(status: str, attempt: int, max_attempts: int, cancel_requested: int) -> JobState:
    return JobState(
        status=JobStatus(status),
        attempt=attempt,
        max_attempts=max_attempts,
        cancel_requested=bool(cancel_requested),
    )


def _end(
    session: Session,
    job_id: str,
    owner: str,
    attempt: int,
    change: Transition,
    values: Mapping[str, Any],
    end_seq: int,
) -> Change | None:
    """Write `change` (the attempt's end, numbered `end_seq`) and its attempt row (`values`:
    what the row records, and the error, traceback, result and TTL the change may set); the
    change as written, or None if the lease was lost."""
    update = {
        "id": job_id,
        "owner": owner,
        "attempt": attempt,
        "now": values["now"],
        "status": change.status.value,
        "new_attempt": change.attempt,
        "result": values["result"],
        "error_effect": change.error.value,
        "error": values["error"],
        "traceback_effect": change.traceback.value,
        "traceback": values["traceback"] if change.traceback is ErrorEffect.SET else None,
        "run_at": change.run_at.timestamp() if change.run_at else None,
        "ends": change.ends_job,
        "result_ttl": values["result_ttl"],
        "end_seq": end_seq,
    }
    ended = session.one("end_attempt", update)
    if ended is None:
        return None
    status, number, seq, error, run_at = ended
    session.execute(
        "insert_attempt",
        {
            "job_id": job_id,
            "attempt": attempt,
            "worker": owner,
            "started_at": values["started_at"],
            "ended_at": values["ended_at"],
            "outcome": change.recorded.value if change.recorded else None,
            "error": values["error"],
            "traceback": values["traceback"],
            "start_seq": values["start_seq"],
            "end_seq": seq,
            "end_status": status,
            "end_attempt": number,
            "end_error": error,
            "end_run_at": run_at,
        },
    )
    if change.ends_job:
        after_parent_ended(session, job_id, change.status, values["now"], values["ttl"])
    return Change(
        uuid.UUID(job_id), seq, JobStatus(status), number, error, VALUES.maybe_time(run_at)
    )


def complete(
    session: Session, items: Sequence[Completion], now: float, default_ttl: float
) -> list[JobEvent]:
    """Apply workers' outcomes (their events already stored); the events of the ends applied
    (`event_log.end_events`). An outcome whose lease was lost is dropped."""
    states = {
        row[0]: row[1:]
        for row in session.all("attempt_states", {"ids": json_list([str(i.job_id) for i in items])})
    }
    ended: list[JobEvent] = []
    for item in items:
        job_id = str(item.job_id)
        found = states.get(job_id)
        if found is None:
            logger.info("dropping the outcome of job %s: it no longer exists", job_id)
            continue
        status, attempt, max_attempts, cancel_requested, event_seq, stored_seq = found
        if status != JobStatus.RUNNING:
            logger.info("dropping the outcome of job %s: lease lost", job_id)
            continue
        state = _state(status, attempt, max_attempts, cancel_requested)
        change = transitions.after_attempt(state, item.outcome, item.retry_at)
        row = outcome_row(item, default_ttl)
        # A success's end takes two numbers: its result event's, then its own.
        end_seq = max(event_seq, item.event_seq, stored_seq) + 1
        if change.status is JobStatus.SUCCEEDED:
            end_seq += 1
        values = {
            "now": now,
            "started_at": item.started_at.timestamp(),
            "ended_at": item.ended_at.timestamp(),
            "result": row.result,
            "error": row.error,
            "traceback": row.traceback,
            "result_ttl": row.result_ttl,
            "ttl": default_ttl,
            "start_seq": item.start_seq or event_seq,
        }
        written = _end(session, job_id, item.lease_owner, item.attempt, change, values, end_seq)
        if written is None:
            logger.info("dropping the outcome of job %s: lease lost", job_id)
            continue
        result = item.outcome.result if isinstance(item.outcome, Succeeded) else None
        ended += end_events(written, item.ended_at, result)
    return ended


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
    for row in session.all(selector, params):
        job_id, attempt, max_attempts, owner, started_at, cancel_requested, seq, stored = row
        state = _state(JobStatus.RUNNING, attempt, max_attempts, cancel_requested)
        change = transitions.end_lease(state, lost=lost, now=VALUES.to_time(now))
        values = {
            "now": now,
            "started_at": started_at if started_at is not None else now,
            "ended_at": now,
            "result": None,
            "error": transitions.lease_end_error(reason, owner),
            "traceback": None,
            "result_ttl": default_ttl,
            "ttl": default_ttl,
            "start_seq": seq,
        }
        end_seq = max(seq, seq_floors.get(job_id, 0), stored) + 1
        if _end(session, job_id, owner, attempt, change, values, end_seq) is not None:
            ended += 1
    return ended
