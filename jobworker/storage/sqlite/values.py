"""How values are stored in the SQLite file: times as REAL epoch seconds (UTC), ids as canonical
UUID text, lists as JSON text (read by `json_each`), and the row a new job or an event is
written from."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from jobworker.models import JobEvent, NewJob
from jobworker.storage.event_log import fences_of
from jobworker.storage.rows import Values

__all__ = ["VALUES", "event_row", "event_rows_of", "from_timestamp", "job_row", "json_list"]


def from_timestamp(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def to_uuid(value: str) -> uuid.UUID:
    """An id as jobworker writes it: a UUID's canonical text (another spelling of a UUID would
    match no statement, which all find a job by that text)."""
    job_id = uuid.UUID(value)
    if str(job_id) != value:
        raise ValueError(f"{value!r} is not a UUID in canonical form")
    return job_id


def to_bytes(value: bytes | str) -> bytes:
    """A payload: jobworker writes BLOBs; a row written by hand may hold TEXT."""
    return value.encode() if isinstance(value, str) else bytes(value)


# What the row mappers of `storage/rows.py` convert SQLite's values with.
VALUES = Values(to_uuid=to_uuid, to_time=from_timestamp, to_bytes=to_bytes)


def json_list(values: Sequence[str]) -> str:
    return msgspec.json.encode(list(values)).decode()


def job_row(job: NewJob) -> dict[str, Any]:
    """The parameters of the `enqueue` statement."""
    return {
        "id": str(job.id),
        "job_type": job.job_type,
        "queue": job.queue,
        "priority": job.priority,
        "status": job.status.value,
        "args": job.args,
        "max_attempts": job.max_attempts,
        "enqueued_at": job.enqueued_at.timestamp(),
        "run_at": job.run_at.timestamp(),
        "idempotency_key": job.idempotency_key,
        "continues_job_id": str(job.continues_job_id) if job.continues_job_id else None,
        "result_ttl": job.result_ttl,
        "kind": job.kind.value,
        "trace_context": job.trace_context,
    }


def event_row(
    event: JobEvent, transient: bool, emitted_by: tuple[str, int] | None = None
) -> dict[str, Any]:
    """The parameters of the `insert_event` statement (`emitted_by`: the attempt whose event it
    is, which fences it; None for the storage's own)."""
    owner, attempt = emitted_by if emitted_by is not None else (None, None)
    return {
        "owner": owner,
        "attempt": attempt,
        "job_id": str(event.job_id),
        "seq": event.seq,
        "kind": event.kind.value,
        "occurred_at": event.occurred_at.timestamp(),
        "payload": bytes(event.payload),
        "transient": int(transient),
    }


def event_rows_of(
    events: Sequence[JobEvent], emitted_by: Sequence[tuple[str, int]], kept: Collection[str]
) -> list[dict[str, Any]]:
    """`insert_event` parameters of attempts' events (`emitted_by`: each one's attempt, in the
    same order; empty: none is fenced), transient when their kind is not `kept`."""
    return [
        event_row(event, event.kind not in kept, fence)
        for event, fence in zip(events, fences_of(events, emitted_by), strict=True)
    ]
