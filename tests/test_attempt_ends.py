"""`attempt_ends`: what `transitions` decides about an attempt's end, as the values every
backend's one statement applies."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from jobworker.models import (
    AttemptOutcome,
    Cancelled,
    Completion,
    Failed,
    JobStatus,
    Released,
    Succeeded,
)
from jobworker.storage.attempt_ends import Lease, of_completion, of_lease
from jobworker.transitions import ErrorEffect

T0 = datetime(2030, 1, 1, tzinfo=UTC)
JOB = uuid.uuid4()


def completion(outcome: object, **more: object) -> Completion:
    values: dict[str, object] = {
        "job_id": JOB,
        "attempt": 2,
        "lease_owner": "w1",
        "started_at": T0,
        "ended_at": T0 + timedelta(seconds=3),
        "outcome": outcome,
        "event_seq": 9,
        "start_seq": 5,
    }
    values.update(more)
    return Completion(**values)  # type: ignore[arg-type]


def test_a_success_is_the_same_either_way_and_takes_two_numbers() -> None:
    plain, asked = of_completion(completion(Succeeded(result=b"7")), 60.0)
    assert (plain.cancel_requested, asked.cancel_requested) == (False, True)
    for end in (plain, asked):
        assert (end.status, end.recorded, end.ends, end.seq_step) == (
            JobStatus.SUCCEEDED,
            AttemptOutcome.SUCCEEDED,
            True,
            2,
        )
        assert (end.result, end.error_effect, end.seq_floor, end.start_seq) == (
            b"7",
            ErrorEffect.CLEAR,
            9,
            5,
        )


def test_a_failure_retries_unless_its_cancel_was_requested() -> None:
    retry_at = T0 + timedelta(minutes=1)
    failed = Failed(error="boom", traceback="tb")
    plain, asked = of_completion(completion(failed, retry_at=retry_at), 60.0)
    assert (plain.status, plain.run_at, plain.ends, plain.error_effect) == (
        JobStatus.FAILED,
        retry_at,
        False,
        ErrorEffect.SET,
    )
    assert (asked.status, asked.run_at, asked.ends) == (JobStatus.CANCELLED, None, True)
    # The job keeps the reason its cancel was requested with and loses the traceback; the
    # attempt row keeps what the attempt did.
    assert (asked.error_effect, asked.traceback_effect) == (ErrorEffect.KEEP, ErrorEffect.CLEAR)
    assert (asked.recorded, asked.error, asked.traceback) == (AttemptOutcome.FAILED, "boom", "tb")


def test_a_released_attempt_gives_its_count_back_unless_cancelled() -> None:
    plain, asked = of_completion(completion(Released(reason="shutdown")), 60.0)
    assert (plain.status, plain.attempt_change, plain.ends) == (JobStatus.QUEUED, -1, False)
    assert (asked.status, asked.attempt_change, asked.ends) == (JobStatus.CANCELLED, 0, True)
    cancelled, _ = of_completion(completion(Cancelled(reason="asked")), 30.0)
    assert (cancelled.status, cancelled.error, cancelled.result_ttl) == (
        JobStatus.CANCELLED,
        "asked",
        30.0,
    )


def test_a_lost_lease_counts_its_attempt_and_is_numbered_above_the_bus() -> None:
    lease = Lease(JOB, 3, 3, "w1", T0, False, 12)
    now = T0 + timedelta(seconds=40)
    dead = of_lease(lease, lost=True, reason="lease expired", floor=20, now=now, default_ttl=5)
    assert (dead.status, dead.recorded, dead.ends, dead.seq_floor, dead.start_seq) == (
        JobStatus.DEAD,
        AttemptOutcome.LOST,
        True,
        20,
        12,
    )
    assert dead.error == "lease expired (worker w1)" and dead.ended_at == now
    again = of_lease(
        lease._replace(attempt=1), lost=True, reason="x", floor=0, now=now, default_ttl=5
    )
    assert (again.status, again.run_at, again.seq_floor) == (JobStatus.QUEUED, now, 12)
    given = of_lease(lease, lost=False, reason="shutdown", floor=0, now=now, default_ttl=5)
    assert (given.status, given.attempt_change, given.error_effect) == (
        JobStatus.QUEUED,
        -1,
        ErrorEffect.KEEP,
    )
    asked = of_lease(
        lease._replace(cancel_requested=True),
        lost=True,
        reason="x",
        floor=0,
        now=now,
        default_ttl=5,
    )
    assert (asked.status, asked.cancel_requested) == (JobStatus.CANCELLED, True)
