"""A job's events as PostgreSQL holds them: rows stored (transient when their kind is not kept),
the lifecycle events of status changes stored beside the statements that make them, and a page
read as plain rows in one statement and built by `storage.event_log`."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from typing import Any

import msgspec

from jobworker.models import EventKind, JobEvent, JobStatus
from jobworker.storage.event_log import (
    AttemptMarks,
    Change,
    JobMarks,
    change_event,
    event_page,
    fences_of,
)
from jobworker.storage.postgres.connection import Database, plain_uuid

__all__ = ["change_of", "event_params", "read_page", "store_changes", "store_events"]

_LIFECYCLE = frozenset({EventKind.LIFECYCLE.value})  # a status change's event: always kept


def event_params(
    events: Sequence[JobEvent],
    kept: Collection[str],
    emitted_by: Sequence[tuple[str, int]] = (),
    *,
    text_json: bool = False,
) -> dict[str, Any]:
    """The arrays that store `events` (a row is transient when its kind is not in `kept`; each
    fenced by the attempt `emitted_by` names in the same order: empty for the storage's own
    events). `text_json`: for a caller's own connection, which exchanges jsonb as text."""
    fences = fences_of(events, emitted_by)
    payloads: list[Any] = [bytes(event.payload) for event in events]
    return {
        "owners": [fence and fence[0] for fence in fences],
        "attempts": [fence and fence[1] for fence in fences],
        "job_ids": [event.job_id for event in events],
        "seqs": [event.seq for event in events],
        "kinds": [event.kind.value for event in events],
        "times": [event.occurred_at for event in events],
        "payloads": [p.decode() for p in payloads] if text_json else payloads,
        "transient": [event.kind.value not in kept for event in events],
    }


async def store_events(
    db: Database,
    events: Sequence[JobEvent],
    kept: Collection[str],
    emitted_by: Sequence[tuple[str, int]] = (),
    *,
    channel: str | None,
    conn: Any = None,
    text_json: bool = False,
) -> None:
    """Store `events` (those already stored are left as they are; an attempt's, `emitted_by`,
    only while it may still write) and, with `channel`, wake the readers of their jobs (at
    commit, on a transaction's `conn`)."""
    if events:
        params = event_params(events, kept, emitted_by, text_json=text_json)
        await db.execute("store_events", **params, channel=channel, conn=conn)


def change_of(row: Any) -> Change:
    """A changed job as a statement returns it: id, event_seq, status, attempt, error, run_at."""
    return Change(
        plain_uuid(row["id"]),
        row["event_seq"],
        JobStatus(row["status"]),
        row["attempt"],
        row["error"],
        row["run_at"],
    )


async def store_changes(
    db: Database, changed: Iterable[Any], at: datetime, *, conn: Any, text_json: bool = False
) -> int:
    """Store the lifecycle event of each changed job (rows as `change_of` reads them), at `at`
    (the storage's clock, as the statement that changed them was given), in the transaction of
    `conn`; readers without Redis are woken when it commits. Returns how many."""
    events = [change_event(change_of(row), at) for row in changed]
    await store_events(
        db, events, _LIFECYCLE, channel=db.events_channel, conn=conn, text_json=text_json
    )
    return len(events)


async def read_page(
    db: Database, job_id: uuid.UUID, after_seq: int, limit: int, *, transient: bool
) -> list[JobEvent]:
    """The job's events after `after_seq`, at most `limit`: its stored rows (the transient ones
    too when `transient`) with the events its rows imply, read in one statement."""
    if limit <= 0:
        return []
    rows = await db.fetch(
        "event_rows", job_id=job_id, after_seq=after_seq, limit=limit, transient=transient
    )
    stored: list[JobEvent] = []
    attempts: list[AttemptMarks] = []
    job: JobMarks | None = None
    for row in rows:
        source = row["source"]
        if source == "event":
            stored.append(
                JobEvent(
                    job_id=job_id,
                    seq=row["seq"],
                    kind=EventKind(row["kind"]),
                    occurred_at=row["occurred_at"],
                    payload=msgspec.Raw(row["payload"]),
                )
            )
        elif source == "attempt":
            attempts.append(_attempt_marks(row))
        else:
            job = JobMarks(
                JobStatus(row["status"]),
                row["attempt"],
                row["occurred_at"],
                row["seq"],
                row["payload"],
            )
    stored.sort(key=lambda event: event.seq)
    return event_page(job_id, after_seq, limit, stored=stored, attempts=attempts, job=job)


def _attempt_marks(row: Any) -> AttemptMarks:
    end_status = row["end_status"]
    return AttemptMarks(
        attempt=row["attempt"],
        started_at=row["occurred_at"],
        ended_at=row["ended_at"],
        start_seq=row["seq"],
        end_seq=row["end_seq"],
        end_status=None if end_status is None else JobStatus(end_status),
        end_attempt=row["end_attempt"],
        end_error=row["end_error"],
        end_run_at=row["end_run_at"],
    )
