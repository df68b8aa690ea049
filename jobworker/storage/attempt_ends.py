"""The end of an attempt as every backend writes it: what `transitions` decided, flattened into
the values one statement applies, whatever the backend.

An attempt ends by its worker's outcome (`of_completion`) or by its lease ending without one
(`of_lease`: given back by a draining worker, lost by a dead one, expired). What it does depends
on one fact only the database holds at the moment it writes: whether the job's cancellation was
requested. So a completion is decided both ways, and the backend's statement applies the way
whose `cancel_requested` matches the job's row (a lease end is decided under the row's lock, one
way). The statement is fenced by the attempt's identity too (the job, its lease owner and
attempt number): an attempt that no longer holds its lease changes nothing.

The end's lifecycle event is numbered above `seq_floor` (the last number the attempt used, here
or on the live bus) and above every stored event of the job; a success takes two numbers, its
result event's and then its own (`seq_step`).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, NamedTuple

from jobworker import transitions
from jobworker.models import AttemptOutcome, Completion, JobStatus
from jobworker.storage.base import outcome_row
from jobworker.transitions import ErrorEffect, JobState, Transition

__all__ = ["AttemptEnd", "Lease", "of_completion", "of_lease"]


class AttemptEnd(NamedTuple):
    """One way an attempt's end is written."""

    job_id: uuid.UUID
    owner: str
    attempt: int
    cancel_requested: bool  # applies only to a job whose flag is this
    status: JobStatus
    attempt_change: int  # -1: a released attempt gives its count back
    recorded: AttemptOutcome  # the attempt row's outcome
    error_effect: ErrorEffect
    error: str | None  # the value `error_effect` sets; the attempt row's error in any case
    traceback_effect: ErrorEffect
    traceback: str | None  # likewise
    result: bytes | None  # a success's result
    run_at: datetime | None  # when the job runs next, if the end moves it
    ends: bool  # it ends the job: completed_at, expires_at, continuations settled
    result_ttl: float
    seq_floor: int
    seq_step: int
    started_at: datetime
    ended_at: datetime
    start_seq: int  # the attempt's `running` event (0: the job's event_seq before the end)


class Lease(NamedTuple):
    """A running job's lease as the backend locked it, to be ended without an outcome."""

    job_id: uuid.UUID
    attempt: int
    max_attempts: int
    owner: str
    started_at: datetime | None
    cancel_requested: bool
    event_seq: int


def _decided(change: Transition, attempt_before: int) -> dict[str, Any]:
    """The fields of an `AttemptEnd` that the transition decides."""
    assert change.recorded is not None, "an attempt's end records its outcome"
    return {
        "status": change.status,
        "attempt_change": change.attempt - attempt_before,
        "recorded": change.recorded,
        "error_effect": change.error,
        "traceback_effect": change.traceback,
        "run_at": change.run_at,
        "ends": change.ends_job,
        "seq_step": 2 if change.status is JobStatus.SUCCEEDED else 1,
    }


def of_completion(item: Completion, default_ttl: float) -> tuple[AttemptEnd, AttemptEnd]:
    """A worker's outcome, decided for a job without a cancel request and for one with it."""
    row = outcome_row(item, default_ttl)
    ends = []
    for requested in (False, True):
        # The worker has decided retry_at already: the job's max_attempts is not consulted.
        state = JobState(status=JobStatus.RUNNING, attempt=item.attempt, cancel_requested=requested)
        change = transitions.after_attempt(state, item.outcome, item.retry_at)
        ends.append(
            AttemptEnd(
                job_id=item.job_id,
                owner=item.lease_owner,
                attempt=item.attempt,
                cancel_requested=requested,
                error=row.error,
                traceback=row.traceback,
                result=row.result,
                result_ttl=row.result_ttl,
                seq_floor=item.event_seq,
                started_at=item.started_at,
                ended_at=item.ended_at,
                start_seq=item.start_seq,
                **_decided(change, item.attempt),
            )
        )
    return ends[0], ends[1]


def of_lease(
    lease: Lease, *, lost: bool, reason: str, floor: int, now: datetime, default_ttl: float
) -> AttemptEnd:
    """A lease that ends without an outcome (see `Jobs.release_owner`), at `now`; `floor`: the
    last number the attempt used on the live bus."""
    state = JobState(
        status=JobStatus.RUNNING,
        attempt=lease.attempt,
        max_attempts=lease.max_attempts,
        cancel_requested=lease.cancel_requested,
    )
    change = transitions.end_lease(state, lost=lost, now=now)
    return AttemptEnd(
        job_id=lease.job_id,
        owner=lease.owner,
        attempt=lease.attempt,
        cancel_requested=lease.cancel_requested,
        error=transitions.lease_end_error(reason, lease.owner),
        traceback=None,
        result=None,
        result_ttl=default_ttl,
        seq_floor=max(lease.event_seq, floor),
        started_at=lease.started_at or now,
        ended_at=now,
        start_seq=lease.event_seq,
        **_decided(change, lease.attempt),
    )
