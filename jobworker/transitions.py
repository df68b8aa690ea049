"""The job state machine, stated once: every transition of a job and what it writes.

Pure values and functions, no I/O. Each function takes what the database holds of a job (a
`JobState`) and returns a `Transition`: the state after, the attempt row it records, what becomes
of the job's error, and whether a lifecycle event is written. The backends implement the writes
it describes (in SQL, or per row in Python on SQLite), the worker asks it how an attempt ended,
and `tests/conformance/test_model.py` holds every backend to it.

The rules, in short:

- A claim counts an attempt. A released attempt (the worker drained before the handler finished)
  does not: the job is queued again with its attempt given back.
- A failure runs again at its `retry_at` (`failed`) while attempts remain and the error is
  retryable; otherwise the job is `dead`. A lost lease counts its attempt too: queued to run at
  once, or dead when it was the last.
- A cancel request wins over anything short of success: the attempt still records what it did,
  but the job ends `cancelled`, with the reason the cancel was requested with.
- A waiting job is cancelled at once; a running one is asked to stop; an ended one is left.
- Only a dead job can be retried, with one more attempt if it had used them all. Only a job that
  is not running can be deleted.
- A job that ends settles its awaiting continuations: queued (or scheduled) when it succeeded,
  cancelled when it ended dead or cancelled or was deleted (`parent_ended_reason`).
- `completed_at` and `expires_at` are set exactly when a transition ends the job, and cleared
  when a dead job is queued again. The traceback goes with the error: a failure's own, none
  for any other error, and none on a job that ends cancelled.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Mapping
from datetime import datetime, timedelta

import msgspec

from jobworker.models import (
    TERMINAL_STATUSES,
    AttemptOutcome,
    Cancelled,
    CancelResult,
    Failed,
    JobStatus,
    Outcome,
    Released,
    Succeeded,
)
from jobworker.retry import RetryPolicy

__all__ = [
    "DELETE_REFUSED",
    "FOLLOWS",
    "RETRY_REFUSED",
    "WAITING",
    "CancelDecision",
    "ErrorEffect",
    "JobState",
    "Transition",
    "after_attempt",
    "after_cancel_request",
    "after_parent",
    "attempt_outcome",
    "cancel",
    "claim",
    "end_lease",
    "initial_status",
    "interrupted",
    "lease_end_error",
    "may_delete",
    "may_follow",
    "parent_ended_reason",
    "retry",
    "retry_at",
]

_S = JobStatus  # short, for the tables below

# Which status may follow which. A status is never followed by itself: that is no transition.
FOLLOWS: Mapping[JobStatus, frozenset[JobStatus]] = {
    _S.QUEUED: frozenset({_S.RUNNING, _S.CANCELLED}),
    _S.SCHEDULED: frozenset({_S.RUNNING, _S.CANCELLED}),  # claimed once due; it is never queued
    _S.AWAITING: frozenset({_S.QUEUED, _S.SCHEDULED, _S.CANCELLED}),
    _S.RUNNING: frozenset({_S.SUCCEEDED, _S.FAILED, _S.DEAD, _S.QUEUED, _S.CANCELLED}),
    _S.FAILED: frozenset({_S.RUNNING, _S.CANCELLED}),
    _S.DEAD: frozenset({_S.QUEUED}),
    _S.SUCCEEDED: frozenset(),
    _S.CANCELLED: frozenset(),
}

# Statuses a cancel ends at once: the job is not running, and has not ended.
WAITING = frozenset({_S.QUEUED, _S.SCHEDULED, _S.AWAITING, _S.FAILED})

RETRY_REFUSED = "only dead jobs can be retried"
DELETE_REFUSED = "cancel it first"


def may_follow(before: JobStatus, after: JobStatus) -> bool:
    return after in FOLLOWS[before]


class ErrorEffect(enum.StrEnum):
    """What a transition does to the job's `error` (or `traceback`) column."""

    KEEP = "keep"  # left as it was (a released attempt; a cancel keeps its requested reason)
    SET = "set"  # the transition's own: the attempt's error, a lease end's or cancel's reason
    CLEAR = "clear"  # none (it succeeded, or a dead job was queued again)


class JobState(msgspec.Struct, frozen=True, kw_only=True):
    """What the database holds of a job that its transitions depend on."""

    status: JobStatus
    attempt: int = 0  # attempts counted so far (the running one included)
    max_attempts: int = 1
    cancel_requested: bool = False


class Transition(msgspec.Struct, frozen=True, kw_only=True):
    """One change of a job and everything it writes."""

    state: JobState  # the job after
    changed: bool  # its status changed: a lifecycle event records it
    recorded: AttemptOutcome | None = None  # the outcome of the job_attempts row it adds
    error: ErrorEffect = ErrorEffect.KEEP
    # The traceback goes with the error: SET is a failed attempt's own (a failure's traceback,
    # none for any other outcome); a job that ends cancelled has none.
    traceback: ErrorEffect = ErrorEffect.KEEP
    run_at: datetime | None = None  # when the job runs next, if this moves it

    @property
    def status(self) -> JobStatus:
        return self.state.status

    @property
    def attempt(self) -> int:
        return self.state.attempt

    @property
    def ends_job(self) -> bool:
        """It sets completed_at and expires_at, and settles the job's continuations."""
        return self.changed and self.state.status in TERMINAL_STATUSES


def _to(
    before: JobState,
    status: JobStatus,
    *,
    attempt: int | None = None,
    recorded: AttemptOutcome | None = None,
    error: ErrorEffect = ErrorEffect.KEEP,
    traceback: ErrorEffect | None = None,
    run_at: datetime | None = None,
) -> Transition:
    """`before` changed to `status`; the traceback follows the error unless told otherwise."""
    state = msgspec.structs.replace(
        before, status=status, attempt=before.attempt if attempt is None else attempt
    )
    return Transition(
        state=state,
        changed=status is not before.status,
        recorded=recorded,
        error=error,
        traceback=error if traceback is None else traceback,
        run_at=run_at,
    )


def _expect(state: JobState, *allowed: JobStatus) -> None:
    if state.status not in allowed:
        raise ValueError(f"a {state.status.value} job cannot take this transition")


# Enqueue and claim ---------------------------------------------------------------------------


def initial_status(*, continuation: bool, run_at: datetime, now: datetime) -> JobStatus:
    """A new job waits on its parent (a continuation), or for its time, or is queued."""
    if continuation:
        return _S.AWAITING
    return _S.SCHEDULED if run_at > now else _S.QUEUED


def claim(state: JobState) -> Transition:
    """A due queued, scheduled or failed job is leased to a worker: its attempt counts now."""
    _expect(state, _S.QUEUED, _S.SCHEDULED, _S.FAILED)
    return _to(state, _S.RUNNING, attempt=state.attempt + 1)


# The end of an attempt -----------------------------------------------------------------------


def retry_at(
    outcome: Outcome,
    attempt: int,
    max_attempts: int,
    now: datetime,
    policy: RetryPolicy,
    rng: random.Random | None = None,
) -> datetime | None:
    """When a failed attempt runs again: after the policy's backoff, if the error is retryable
    and attempts remain; None (it is dead, or it did not fail) otherwise."""
    if isinstance(outcome, Failed) and outcome.retryable and attempt < max_attempts:
        return now + timedelta(seconds=policy.delay(attempt, rng))
    return None


def attempt_outcome(outcome: Outcome, retry_at: datetime | None) -> AttemptOutcome:
    """The outcome an attempt's row records: a failure is `failed` if it runs again, else `dead`."""
    if isinstance(outcome, Succeeded):
        return AttemptOutcome.SUCCEEDED
    if isinstance(outcome, Released):
        return AttemptOutcome.RELEASED
    if isinstance(outcome, Cancelled):
        return AttemptOutcome.CANCELLED
    return AttemptOutcome.FAILED if retry_at is not None else AttemptOutcome.DEAD


def after_cancel_request(outcome: Outcome) -> Outcome:
    """The outcome of a handler asked to stop: stopping by failing is a cancellation (and a
    cancelled job is never retried); anything else stands."""
    if isinstance(outcome, Failed):
        return Cancelled(reason=f"cancelled while running ({outcome.error})")
    return outcome


def interrupted(*, cancel_requested: bool) -> Outcome:
    """The outcome of a handler the worker interrupted: cancelled if its cancellation was
    requested, else given back unfinished (the worker is shutting down)."""
    if cancel_requested:
        return Cancelled(reason="cancelled while running")
    return Released(reason="the worker shut down before the job finished")


def after_attempt(state: JobState, outcome: Outcome, retry_at: datetime | None) -> Transition:
    """A running job's attempt ended with `outcome` (`retry_at`: see `retry_at`).

    The attempt's row records what it did; a cancel request turns anything short of success into
    `cancelled`, keeping the requested reason and counting the attempt even if it was released.
    """
    _expect(state, _S.RUNNING)
    recorded = attempt_outcome(outcome, retry_at)
    if recorded is AttemptOutcome.SUCCEEDED:
        return _to(state, _S.SUCCEEDED, recorded=recorded, error=ErrorEffect.CLEAR)
    if state.cancel_requested:
        return _to(state, _S.CANCELLED, recorded=recorded, traceback=ErrorEffect.CLEAR)
    if recorded is AttemptOutcome.RELEASED:
        return _to(state, _S.QUEUED, attempt=state.attempt - 1, recorded=recorded)
    status = {
        AttemptOutcome.FAILED: _S.FAILED,
        AttemptOutcome.DEAD: _S.DEAD,
        AttemptOutcome.CANCELLED: _S.CANCELLED,
    }[recorded]
    return _to(state, status, recorded=recorded, error=ErrorEffect.SET, run_at=retry_at)


def end_lease(state: JobState, *, lost: bool, now: datetime) -> Transition:
    """A running job's lease ended without an outcome.

    lost=True (its worker died, or the lease expired and was rescued): the attempt counts
    (`lost`); the job runs again at once, or is dead if that was its last attempt.
    lost=False (a draining worker gives it back): as a released attempt, not counted.
    A job whose cancellation was requested ends cancelled either way.
    The error it sets is `lease_end_error`'s.
    """
    _expect(state, _S.RUNNING)
    if state.cancel_requested:
        return _to(
            state, _S.CANCELLED, recorded=AttemptOutcome.CANCELLED, traceback=ErrorEffect.CLEAR
        )
    if not lost:
        return _to(state, _S.QUEUED, attempt=state.attempt - 1, recorded=AttemptOutcome.RELEASED)
    status = _S.DEAD if state.attempt >= state.max_attempts else _S.QUEUED
    return _to(state, status, recorded=AttemptOutcome.LOST, error=ErrorEffect.SET, run_at=now)


def lease_end_error(reason: str, owner: str) -> str:
    """The error a lease's end records (on a lost job, and in every attempt row it ends)."""
    return f"{reason} (worker {owner})"


# Operators: cancel, retry, delete ------------------------------------------------------------


class CancelDecision(msgspec.Struct, frozen=True):
    result: CancelResult
    transition: Transition | None  # None: nothing changes


def cancel(state: JobState) -> CancelDecision:
    """A waiting job is cancelled at once (error: the reason; its continuations follow); a
    running one is flagged so that its worker stops it (error: the reason, kept when it ends
    cancelled); an ended one is left as it is."""
    if state.status in WAITING:
        return CancelDecision(
            CancelResult.CANCELLED, _to(state, _S.CANCELLED, error=ErrorEffect.SET)
        )
    if state.status is _S.RUNNING:
        requested = msgspec.structs.replace(state, cancel_requested=True)
        return CancelDecision(
            CancelResult.REQUESTED,
            Transition(state=requested, changed=False, error=ErrorEffect.SET),  # traceback kept
        )
    return CancelDecision(CancelResult.FINISHED, None)


def retry(state: JobState, now: datetime) -> Transition | None:
    """A dead job is queued again to run now, with one more attempt if it had used them all, its
    error and cancel request cleared. None for any other status (`RETRY_REFUSED`)."""
    if state.status is not _S.DEAD:
        return None
    again = JobState(
        status=_S.QUEUED,
        attempt=state.attempt,
        max_attempts=max(state.max_attempts, state.attempt + 1),
    )
    return Transition(
        state=again,
        changed=True,
        error=ErrorEffect.CLEAR,
        traceback=ErrorEffect.CLEAR,
        run_at=now,
    )


def may_delete(state: JobState) -> bool:
    """Any job but a running one can be deleted (`DELETE_REFUSED`), with its attempts and
    events; its awaiting continuations are then settled as if it had been cancelled."""
    return state.status is not _S.RUNNING


# Continuations -------------------------------------------------------------------------------


def after_parent(
    state: JobState, parent_status: JobStatus | None, *, run_at: datetime, now: datetime
) -> Transition | None:
    """What its parent's end does to an awaiting continuation (`parent_status` None: the parent
    was deleted). Succeeded: it is queued (scheduled while its run_at is ahead). Dead, cancelled
    or deleted: it is cancelled with `parent_ended_reason`, and so are the continuations waiting
    on it, down the chain. None while the parent has not ended, or if the job is not awaiting."""
    if state.status is not _S.AWAITING:
        return None
    if parent_status is _S.SUCCEEDED:
        return _to(state, _S.SCHEDULED if run_at > now else _S.QUEUED)
    if parent_status is None or parent_status in (_S.DEAD, _S.CANCELLED):
        return _to(state, _S.CANCELLED, error=ErrorEffect.SET)
    return None


def parent_ended_reason(parent_id: object, status: JobStatus | str | None) -> str:
    """Why a continuation was cancelled: its parent ended dead or cancelled, or is gone."""
    if status is None:
        return f"parent job {parent_id} no longer exists"
    return f"parent job {parent_id} ended {JobStatus(status).value}"
