"""The end of an attempt as every backend writes it: what `transitions` decided, flattened into
the values one statement applies, whatever the backend.

An attempt ends by its worker's outcome (`of_completion`) or by its lease ending without one
(`of_lease`: given back by a draining worker, lost by a dead one, expired). What it does depends
on one fact only the database holds at the moment it writes: whether the job's cancellation was
requested. So a completion is decided both ways, and the backend applies the way whose
`cancel_requested` matches the job's row (a lease end is decided under the row's lock, one way).
The write is fenced by the attempt's identity too (the job, its lease owner and attempt number):
an attempt that no longer holds its lease changes nothing.

The end's lifecycle event is numbered above `seq_floor` (the last number the attempt used, here
or on the live bus, and for a lease end every stored one); a success takes two numbers, its
result event's and then its own (`seq_step`).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import NamedTuple

from jobworker import transitions
from jobworker.models import AttemptOutcome, Completion, JobStatus, Outcome
from jobworker.storage.base import outcome_row
from jobworker.transitions import ErrorEffect, JobState, Transition

__all__ = ["AttemptEnd", "Decision", "Lease", "of_completion", "of_lease", "of_outcome"]


class Decision(NamedTuple):
    """What a transition decides about a job at an attempt's end (the same for many ends: a
    batch's backend may send each distinct one once)."""

    status: JobStatus
    attempt_change: int  # -1: a released attempt gives its count back
    recorded: AttemptOutcome  # the attempt row's outcome
    error_effect: ErrorEffect  # what happens to the job's error: `AttemptEnd.error` is set...
    traceback_effect: ErrorEffect
    ends: bool  # it ends the job: completed_at, expires_at, continuations settled
    seq_step: int


class AttemptEnd(NamedTuple):
    """One way an attempt's end is written."""

    job_id: uuid.UUID
    owner: str
    attempt: int
    cancel_requested: bool  # applies only to a job whose flag is this
    decision: Decision
    error: str | None  # the value `error_effect` sets; the attempt row's error in any case
    traceback: str | None  # likewise
    result: bytes | None  # a success's result
    run_at: datetime | None  # when the job runs next, if the end moves it
    result_ttl: float
    seq_floor: int
    started_at: datetime
    ended_at: datetime
    start_seq: int  # the attempt's `running` event (0: the job's event_seq before the end)

    @property
    def status(self) -> JobStatus:
        return self.decision.status

    @property
    def attempt_change(self) -> int:
        return self.decision.attempt_change

    @property
    def recorded(self) -> AttemptOutcome:
        return self.decision.recorded

    @property
    def error_effect(self) -> ErrorEffect:
        return self.decision.error_effect

    @property
    def traceback_effect(self) -> ErrorEffect:
        return self.decision.traceback_effect

    @property
    def ends(self) -> bool:
        return self.decision.ends

    @property
    def seq_step(self) -> int:
        return self.decision.seq_step


class Lease(NamedTuple):
    """A running job's lease as the backend locked it, to be ended without an outcome."""

    job_id: uuid.UUID
    attempt: int
    max_attempts: int
    owner: str
    started_at: datetime | None
    cancel_requested: bool
    event_seq: int


def _decided(change: Transition, attempt_before: int) -> Decision:
    assert change.recorded is not None, "an attempt's end records its outcome"
    return Decision(
        status=change.status,
        attempt_change=change.attempt - attempt_before,
        recorded=change.recorded,
        error_effect=change.error,
        traceback_effect=change.traceback,
        ends=change.ends_job,
        seq_step=2 if change.status is JobStatus.SUCCEEDED else 1,
    )


# What `transitions.after_attempt` decides depends on the outcome's kind, its retry time and the
# cancel request only: the transitions without a retry time (every success) are asked once.
_ASKED: dict[tuple[type[Outcome], bool], tuple[Decision, datetime | None]] = {}


def _after_attempt(
    outcome: Outcome, retry_at: datetime | None, requested: bool
) -> tuple[Decision, datetime | None]:
    key = (type(outcome), requested)
    found = _ASKED.get(key) if retry_at is None else None
    if found is None:
        # The worker has decided retry_at already: the job's max_attempts is not consulted.
        state = JobState(status=JobStatus.RUNNING, attempt=1, cancel_requested=requested)
        change = transitions.after_attempt(state, outcome, retry_at)
        found = (_decided(change, 1), change.run_at)
        if retry_at is None:
            _ASKED[key] = found
    return found


def of_outcome(item: Completion, default_ttl: float, *, cancel_requested: bool) -> AttemptEnd:
    """A worker's outcome, decided for a job whose cancellation was requested or not."""
    row = outcome_row(item, default_ttl)
    decision, run_at = _after_attempt(item.outcome, item.retry_at, cancel_requested)
    return AttemptEnd(
        item.job_id,
        item.lease_owner,
        item.attempt,
        cancel_requested,
        decision,
        row.error,
        row.traceback,
        row.result,
        run_at,
        row.result_ttl,
        item.event_seq,
        item.started_at,
        item.ended_at,
        item.start_seq,
    )


def of_completion(item: Completion, default_ttl: float) -> tuple[AttemptEnd, AttemptEnd]:
    """A worker's outcome, decided for a job without a cancel request and for one with it."""
    return (
        of_outcome(item, default_ttl, cancel_requested=False),
        of_outcome(item, default_ttl, cancel_requested=True),
    )


def of_lease(
    lease: Lease, *, lost: bool, reason: str, floor: int, now: datetime, default_ttl: float
) -> AttemptEnd:
    """A lease that ends without an outcome (see `Jobs.release_owner`), at `now`; `floor`: the
    last number the attempt used beyond the job's row (on the live bus, or stored)."""
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
        decision=_decided(change, lease.attempt),
        error=transitions.lease_end_error(reason, lease.owner),
        traceback=None,
        result=None,
        run_at=change.run_at,
        result_ttl=default_ttl,
        seq_floor=max(lease.event_seq, floor),
        started_at=lease.started_at or now,
        ended_at=now,
        start_seq=lease.event_seq,
    )
