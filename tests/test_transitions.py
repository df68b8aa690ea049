"""The job state machine (jobworker.transitions): every transition and what it writes."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from jobworker import transitions as t
from jobworker.models import (
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
from jobworker.transitions import ErrorEffect, JobState

S = JobStatus
NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(seconds=30)
FAILED = Failed(error="ValueError: x", traceback="tb")
PERMANENT = Failed(error="TypeError: y", traceback="tb", retryable=False)


def running(attempt: int = 1, max_attempts: int = 3, *, cancel: bool = False) -> JobState:
    return JobState(
        status=S.RUNNING, attempt=attempt, max_attempts=max_attempts, cancel_requested=cancel
    )


def test_every_status_has_its_followers_and_ended_ones_have_almost_none() -> None:
    assert set(t.FOLLOWS) == set(JobStatus)
    assert t.FOLLOWS[S.SUCCEEDED] == t.FOLLOWS[S.CANCELLED] == frozenset()
    assert t.FOLLOWS[S.DEAD] == {S.QUEUED}
    assert t.may_follow(S.RUNNING, S.FAILED) and t.may_follow(S.FAILED, S.RUNNING)
    assert not t.may_follow(S.QUEUED, S.SUCCEEDED)
    assert not t.may_follow(S.SCHEDULED, S.QUEUED)
    assert all(status not in followers for status, followers in t.FOLLOWS.items())


def test_a_new_job_awaits_its_parent_or_its_time_or_is_queued() -> None:
    assert t.initial_status(continuation=True, run_at=NOW, now=NOW) is S.AWAITING
    assert t.initial_status(continuation=False, run_at=LATER, now=NOW) is S.SCHEDULED
    assert t.initial_status(continuation=False, run_at=NOW, now=NOW) is S.QUEUED


@pytest.mark.parametrize("status", [S.QUEUED, S.SCHEDULED, S.FAILED])
def test_a_claim_counts_an_attempt(status: JobStatus) -> None:
    change = t.claim(JobState(status=status, attempt=1, max_attempts=3))
    assert change.state == JobState(status=S.RUNNING, attempt=2, max_attempts=3)
    assert change.changed and change.recorded is None and change.error is ErrorEffect.KEEP
    assert not change.ends_job


@pytest.mark.parametrize("status", [S.AWAITING, S.RUNNING, S.SUCCEEDED, S.DEAD, S.CANCELLED])
def test_only_a_due_job_can_be_claimed(status: JobStatus) -> None:
    with pytest.raises(ValueError, match=f"a {status.value} job"):
        t.claim(JobState(status=status))


def test_a_failure_runs_again_after_the_backoff_while_attempts_remain() -> None:
    policy = RetryPolicy(base_delay=5.0, max_delay=60.0)
    at = t.retry_at(FAILED, 1, 3, NOW, policy, random.Random(7))
    assert at is not None and NOW + timedelta(seconds=5) <= at <= NOW + timedelta(seconds=10)
    assert t.retry_at(FAILED, 3, 3, NOW, policy) is None  # its last attempt
    assert t.retry_at(PERMANENT, 1, 3, NOW, policy) is None
    for other in (Succeeded(result=b"1"), Released(reason="r"), Cancelled(reason="c")):
        assert t.retry_at(other, 1, 3, NOW, policy) is None


def test_the_attempt_row_records_what_the_attempt_did() -> None:
    assert t.attempt_outcome(Succeeded(result=b"1"), None) is AttemptOutcome.SUCCEEDED
    assert t.attempt_outcome(FAILED, LATER) is AttemptOutcome.FAILED
    assert t.attempt_outcome(FAILED, None) is AttemptOutcome.DEAD
    assert t.attempt_outcome(Released(reason="r"), None) is AttemptOutcome.RELEASED
    assert t.attempt_outcome(Cancelled(reason="c"), None) is AttemptOutcome.CANCELLED


def test_success_ends_the_job_and_clears_its_error() -> None:
    change = t.after_attempt(running(), Succeeded(result=b"1"), None)
    assert change.state == JobState(status=S.SUCCEEDED, attempt=1, max_attempts=3)
    assert change.recorded is AttemptOutcome.SUCCEEDED and change.error is ErrorEffect.CLEAR
    assert change.traceback is ErrorEffect.CLEAR
    assert change.changed and change.ends_job and change.run_at is None


def test_success_wins_over_a_cancel_request() -> None:
    change = t.after_attempt(running(cancel=True), Succeeded(result=b"1"), None)
    assert change.status is S.SUCCEEDED and change.recorded is AttemptOutcome.SUCCEEDED


def test_a_retried_failure_is_failed_until_its_retry_at_and_keeps_its_error() -> None:
    change = t.after_attempt(running(), FAILED, LATER)
    assert change.state == JobState(status=S.FAILED, attempt=1, max_attempts=3)
    assert change.recorded is AttemptOutcome.FAILED and change.error is ErrorEffect.SET
    assert change.traceback is ErrorEffect.SET  # the failure's
    assert change.run_at == LATER and not change.ends_job


def test_a_failure_without_a_retry_is_dead() -> None:
    change = t.after_attempt(running(3, 3), FAILED, None)
    assert change.status is S.DEAD and change.attempt == 3
    assert change.recorded is AttemptOutcome.DEAD and change.error is ErrorEffect.SET
    assert change.ends_job


def test_a_released_attempt_is_not_counted() -> None:
    change = t.after_attempt(running(2), Released(reason="shutdown"), None)
    assert change.state == JobState(status=S.QUEUED, attempt=1, max_attempts=3)
    assert change.recorded is AttemptOutcome.RELEASED and change.error is ErrorEffect.KEEP
    assert change.traceback is ErrorEffect.KEEP
    assert change.changed and not change.ends_job


def test_a_cancelled_outcome_ends_the_job_with_its_reason() -> None:
    change = t.after_attempt(running(), Cancelled(reason="stop"), None)
    assert change.status is S.CANCELLED and change.recorded is AttemptOutcome.CANCELLED
    assert change.error is ErrorEffect.SET and change.ends_job


@pytest.mark.parametrize(
    ("outcome", "retry_at", "recorded"),
    [
        (FAILED, LATER, AttemptOutcome.FAILED),
        (FAILED, None, AttemptOutcome.DEAD),
        (Released(reason="shutdown"), None, AttemptOutcome.RELEASED),
        (Cancelled(reason="stop"), None, AttemptOutcome.CANCELLED),
    ],
)
def test_a_cancel_request_wins_over_anything_short_of_success(
    outcome: Failed | Released | Cancelled,
    retry_at: datetime | None,
    recorded: AttemptOutcome,
) -> None:
    change = t.after_attempt(running(2, cancel=True), outcome, retry_at)
    assert change.status is S.CANCELLED and change.attempt == 2  # a release counts here
    assert change.recorded is recorded  # the row still says what the attempt did
    assert change.error is ErrorEffect.KEEP  # the reason the cancel was requested with
    assert change.traceback is ErrorEffect.CLEAR  # no failure's: the error is the cancel's
    assert change.run_at is None and change.ends_job


def test_only_a_running_job_ends_an_attempt() -> None:
    with pytest.raises(ValueError, match="a queued job"):
        t.after_attempt(JobState(status=S.QUEUED), Succeeded(result=b"1"), None)
    with pytest.raises(ValueError, match="a failed job"):
        t.end_lease(JobState(status=S.FAILED), lost=True, now=NOW)


def test_a_failure_after_a_cancel_request_is_a_cancellation() -> None:
    assert t.after_cancel_request(FAILED) == Cancelled(
        reason="cancelled while running (ValueError: x)"
    )
    for other in (Succeeded(result=b"1"), Released(reason="r"), Cancelled(reason="c")):
        assert t.after_cancel_request(other) is other


def test_an_interrupted_handler_is_cancelled_if_asked_else_released() -> None:
    assert t.interrupted(cancel_requested=True) == Cancelled(reason="cancelled while running")
    assert t.interrupted(cancel_requested=False) == Released(
        reason="the worker shut down before the job finished"
    )


def test_a_lost_lease_counts_its_attempt_and_runs_again_at_once() -> None:
    change = t.end_lease(running(1, 3), lost=True, now=NOW)
    assert change.state == JobState(status=S.QUEUED, attempt=1, max_attempts=3)
    assert change.recorded is AttemptOutcome.LOST and change.error is ErrorEffect.SET
    assert change.traceback is ErrorEffect.SET  # a lease's end has none
    assert change.run_at == NOW and not change.ends_job


def test_a_lost_lease_on_the_last_attempt_is_dead() -> None:
    change = t.end_lease(running(3, 3), lost=True, now=NOW)
    assert change.status is S.DEAD and change.recorded is AttemptOutcome.LOST
    assert change.ends_job


def test_a_drained_lease_is_released_without_counting() -> None:
    change = t.end_lease(running(3, 3), lost=False, now=NOW)
    assert change.state == JobState(status=S.QUEUED, attempt=2, max_attempts=3)
    assert change.recorded is AttemptOutcome.RELEASED and change.error is ErrorEffect.KEEP


@pytest.mark.parametrize("lost", [True, False])
def test_a_lease_that_ends_after_a_cancel_request_ends_cancelled(lost: bool) -> None:
    change = t.end_lease(running(3, 3, cancel=True), lost=lost, now=NOW)
    assert change.status is S.CANCELLED and change.attempt == 3
    assert change.recorded is AttemptOutcome.CANCELLED and change.error is ErrorEffect.KEEP
    assert change.traceback is ErrorEffect.CLEAR and change.ends_job


def test_the_error_of_a_lease_end_names_the_worker() -> None:
    assert t.lease_end_error("lease expired", "host:1:0:ab") == "lease expired (worker host:1:0:ab)"


@pytest.mark.parametrize("status", sorted(t.WAITING))
def test_cancel_ends_a_waiting_job_at_once(status: JobStatus) -> None:
    decision = t.cancel(JobState(status=status, attempt=1, max_attempts=3))
    assert decision.result is CancelResult.CANCELLED
    assert decision.transition is not None
    assert decision.transition.state == JobState(status=S.CANCELLED, attempt=1, max_attempts=3)
    assert decision.transition.recorded is None and decision.transition.error is ErrorEffect.SET
    assert decision.transition.ends_job


def test_cancel_asks_the_worker_of_a_running_job() -> None:
    decision = t.cancel(running())
    assert decision.result is CancelResult.REQUESTED
    assert decision.transition is not None
    assert decision.transition.state == running(cancel=True)
    assert not decision.transition.changed and not decision.transition.ends_job
    assert decision.transition.error is ErrorEffect.SET  # the reason, kept when it ends
    assert decision.transition.traceback is ErrorEffect.KEEP


@pytest.mark.parametrize("status", [S.SUCCEEDED, S.DEAD, S.CANCELLED])
def test_cancel_leaves_an_ended_job(status: JobStatus) -> None:
    assert t.cancel(JobState(status=status)) == t.CancelDecision(CancelResult.FINISHED, None)


def test_retry_queues_a_dead_job_with_one_more_attempt_if_it_used_them_all() -> None:
    change = t.retry(JobState(status=S.DEAD, attempt=3, max_attempts=3), NOW)
    assert change is not None
    assert change.state == JobState(status=S.QUEUED, attempt=3, max_attempts=4)
    assert change.error is ErrorEffect.CLEAR and change.traceback is ErrorEffect.CLEAR
    assert change.run_at == NOW
    assert change.changed and change.recorded is None and not change.ends_job
    spare = t.retry(JobState(status=S.DEAD, attempt=1, max_attempts=3), NOW)
    assert spare is not None and spare.state.max_attempts == 3


@pytest.mark.parametrize("status", [s for s in JobStatus if s is not S.DEAD])
def test_only_a_dead_job_can_be_retried(status: JobStatus) -> None:
    assert t.retry(JobState(status=status), NOW) is None


def test_any_job_but_a_running_one_can_be_deleted() -> None:
    assert [s for s in JobStatus if not t.may_delete(JobState(status=s))] == [S.RUNNING]


def test_a_parent_that_succeeded_queues_its_continuation() -> None:
    awaiting = JobState(status=S.AWAITING, max_attempts=3)
    queued = t.after_parent(awaiting, S.SUCCEEDED, run_at=NOW, now=NOW)
    assert queued is not None and queued.status is S.QUEUED and queued.error is ErrorEffect.KEEP
    scheduled = t.after_parent(awaiting, S.SUCCEEDED, run_at=LATER, now=NOW)
    assert scheduled is not None and scheduled.status is S.SCHEDULED
    assert not queued.ends_job and queued.changed


@pytest.mark.parametrize("parent", [S.DEAD, S.CANCELLED, None])
def test_a_parent_that_ended_otherwise_cancels_its_continuation(parent: JobStatus | None) -> None:
    change = t.after_parent(JobState(status=S.AWAITING), parent, run_at=NOW, now=NOW)
    assert change is not None and change.status is S.CANCELLED
    assert change.error is ErrorEffect.SET and change.ends_job


@pytest.mark.parametrize("parent", [S.QUEUED, S.SCHEDULED, S.AWAITING, S.RUNNING, S.FAILED])
def test_a_parent_that_has_not_ended_leaves_its_continuation(parent: JobStatus) -> None:
    assert t.after_parent(JobState(status=S.AWAITING), parent, run_at=NOW, now=NOW) is None


def test_only_an_awaiting_job_is_settled_by_its_parent() -> None:
    assert t.after_parent(JobState(status=S.QUEUED), S.DEAD, run_at=NOW, now=NOW) is None


def test_the_reason_a_continuation_was_cancelled() -> None:
    assert t.parent_ended_reason("p1", S.DEAD) == "parent job p1 ended dead"
    assert t.parent_ended_reason("p1", "cancelled") == "parent job p1 ended cancelled"
    assert t.parent_ended_reason("p1", None) == "parent job p1 no longer exists"


def _every_change(state: JobState) -> list[t.Transition | None]:
    outcomes: list[Outcome] = [
        Succeeded(result=b"1"),
        FAILED,
        Released(reason="r"),
        Cancelled(reason="c"),
    ]
    changes: list[t.Transition | None] = [t.cancel(state).transition, t.retry(state, NOW)]
    for run_at in (NOW, LATER):
        changes += [t.after_parent(state, p, run_at=run_at, now=NOW) for p in (*JobStatus, None)]
    if state.status is S.RUNNING:
        changes += [t.after_attempt(state, o, r) for o in outcomes for r in (None, LATER)]
        changes += [t.end_lease(state, lost=lost, now=NOW) for lost in (True, False)]
    if state.status in (S.QUEUED, S.SCHEDULED, S.FAILED):
        changes.append(t.claim(state))
    return changes


def test_the_transitions_go_exactly_where_follows_says() -> None:
    """Every function over every state it accepts: each status it leads to may follow, and each
    pair FOLLOWS allows is taken by some transition."""
    taken: set[tuple[JobStatus, JobStatus]] = set()
    for status in JobStatus:
        for attempt in (1, 3):
            for requested in (False, True):
                state = JobState(
                    status=status, attempt=attempt, max_attempts=3, cancel_requested=requested
                )
                for change in _every_change(state):
                    if change is not None and change.changed:
                        assert t.may_follow(status, change.status), (state, change)
                        taken.add((status, change.status))
    allowed = {(before, after) for before, afters in t.FOLLOWS.items() for after in afters}
    assert taken == allowed
