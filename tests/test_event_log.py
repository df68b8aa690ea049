"""The one merge of a job's stored events with the events its rows imply."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import msgspec

from jobworker.models import EventKind, JobEvent, JobStatus
from jobworker.payloads import Lifecycle
from jobworker.storage.event_log import AttemptMarks, JobMarks, event_page, result_event

JOB = uuid.uuid4()
T0 = datetime(2030, 1, 1, tzinfo=UTC)


def progress(seq: int) -> JobEvent:
    return JobEvent(
        job_id=JOB,
        seq=seq,
        kind=EventKind.PROGRESS,
        occurred_at=T0,
        payload=msgspec.Raw(b'{"done":1}'),
    )


def ended(attempt: int, start: int, end: int, status: JobStatus, **more: object) -> AttemptMarks:
    values: dict[str, object] = {
        "attempt": attempt,
        "started_at": T0 + timedelta(seconds=start),
        "ended_at": T0 + timedelta(seconds=end),
        "start_seq": start,
        "end_seq": end,
        "end_status": status,
        "end_attempt": attempt,
        "end_error": None,
        "end_run_at": None,
    }
    values.update(more)
    return AttemptMarks(**values)  # type: ignore[arg-type]


def shape(events: list[JobEvent]) -> list[tuple[int, str, str | None]]:
    return [
        (
            e.seq,
            e.kind.value,
            e.decoded(Lifecycle).status.value if e.kind is EventKind.LIFECYCLE else None,
        )
        for e in events
    ]


def test_a_retried_then_succeeded_job_reads_in_order() -> None:
    retry_at = T0 + timedelta(minutes=1)
    attempts = [
        ended(1, 1, 3, JobStatus.FAILED, end_error="boom", end_run_at=retry_at),
        ended(2, 4, 7, JobStatus.SUCCEEDED),
    ]
    job = JobMarks(JobStatus.SUCCEEDED, 2, T0, 7, b"42")
    page = event_page(
        JOB,
        0,
        100,
        stored=[progress(2), progress(5)],
        attempts=attempts,
        job=job,
    )
    assert shape(page) == [
        (1, "lifecycle", "running"),
        (2, "progress", None),
        (3, "lifecycle", "failed"),
        (4, "lifecycle", "running"),
        (5, "progress", None),
        (6, "result", None),
        (7, "lifecycle", "succeeded"),
    ]
    failed = page[2].decoded(Lifecycle)
    assert (failed.error, failed.retry_at, failed.attempt) == ("boom", retry_at, 1)
    assert page[5].decoded() == {"value": 42}


def test_paging_and_the_running_attempt() -> None:
    job = JobMarks(JobStatus.RUNNING, 2, T0, 4, None)
    attempts = [ended(1, 1, 3, JobStatus.QUEUED)]
    page = event_page(JOB, 1, 2, stored=[progress(2), progress(5)], attempts=attempts, job=job)
    assert shape(page) == [(2, "progress", None), (3, "lifecycle", "queued")]
    rest = event_page(JOB, 3, 10, stored=[progress(5)], attempts=[], job=job)
    assert shape(rest) == [(4, "lifecycle", "running"), (5, "progress", None)]


def test_a_result_is_implied_just_before_its_success_while_the_job_succeeded() -> None:
    attempts = [ended(1, 1, 3, JobStatus.SUCCEEDED)]
    done = JobMarks(JobStatus.SUCCEEDED, 1, T0, 3, b'"x"')
    page = event_page(JOB, 0, 9, stored=[], attempts=attempts, job=done)
    assert page[1] == result_event(JOB, 2, T0 + timedelta(seconds=3), b'"x"')
    assert shape(page) == [
        (1, "lifecycle", "running"),
        (2, "result", None),
        (3, "lifecycle", "succeeded"),
    ]
    # After the success, a page starts after it; after the result, only the end follows.
    assert shape(event_page(JOB, 2, 9, stored=[], attempts=attempts, job=done)) == [
        (3, "lifecycle", "succeeded")
    ]


def test_an_implied_event_stands_over_a_stored_row_of_its_number() -> None:
    """A late row of an attempt that had lost its lease cannot hide the storage's own events."""
    attempts = [ended(1, 1, 3, JobStatus.SUCCEEDED)]
    done = JobMarks(JobStatus.SUCCEEDED, 1, T0, 3, b"1")
    page = event_page(JOB, 0, 9, stored=[progress(2), progress(3)], attempts=attempts, job=done)
    assert shape(page) == [
        (1, "lifecycle", "running"),
        (2, "result", None),
        (3, "lifecycle", "succeeded"),
    ]


def test_an_unknown_job_has_only_its_stored_rows() -> None:
    assert event_page(JOB, 0, 1, stored=[progress(1), progress(2)], attempts=[], job=None) == [
        progress(1)
    ]
