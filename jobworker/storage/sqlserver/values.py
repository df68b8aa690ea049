"""Python values as this backend's statements take them (times as ISO text, batches as JSON), and
pyodbc's values as Python's."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from jobworker.models import JobEvent, NewJob
from jobworker.storage.rows import Values

__all__ = [
    "LATEST",
    "VALUES",
    "event_row",
    "expiry",
    "job_fields",
    "json",
    "text",
    "to_bytes",
    "to_time",
    "to_uuid",
    "ts",
]

# The largest datetime2: a result kept for ever.
LATEST = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


def ts(value: datetime) -> str:
    """A time as ISO 8601 text in UTC without offset: what the datetime2(6) columns hold."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


def expiry(now: datetime, ttl: float) -> datetime:
    try:
        return now + timedelta(seconds=ttl)
    except (OverflowError, ValueError):
        return LATEST


def to_time(value: Any) -> datetime:
    """A datetime2 column (naive, UTC) as an aware UTC datetime."""
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime from the driver, got {value!r}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def to_uuid(value: Any) -> uuid.UUID:
    """pyodbc returns uniqueidentifier as upper-case text (or a UUID with native_uuid)."""
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def to_bytes(value: Any) -> bytes:
    """JSON text in nvarchar(max) as UTF-8 bytes."""
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


VALUES = Values(to_uuid=to_uuid, to_time=to_time, to_bytes=to_bytes)


def text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8")


def json(value: object) -> str:
    return msgspec.json.encode(value).decode("utf-8")


def job_fields(job: NewJob) -> dict[str, Any]:
    """A new job as the statements that insert jobs read it (OPENJSON)."""
    return {
        "id": str(job.id),
        "job_type": job.job_type,
        "queue": job.queue,
        "priority": job.priority,
        "status": job.status.value,
        "args": job.args.decode("utf-8"),
        "max_attempts": job.max_attempts,
        "enqueued_at": ts(job.enqueued_at),
        "run_at": ts(job.run_at),
        "idempotency_key": job.idempotency_key,
        "continues_job_id": None if job.continues_job_id is None else str(job.continues_job_id),
        "result_ttl": job.result_ttl,
        "kind": job.kind.value,
        "trace_context": job.trace_context,
    }


def event_row(
    event: JobEvent, transient: bool, emitted_by: tuple[str, int] | None = None
) -> dict[str, object]:
    """An event as the statements that store events read it (OPENJSON); `emitted_by`: the
    attempt whose event it is, which fences it (None: the storage's own)."""
    owner, attempt = emitted_by if emitted_by is not None else (None, None)
    return {
        "owner": owner,
        "attempt": attempt,
        "job_id": str(event.job_id),
        "seq": event.seq,
        "kind": event.kind.value,
        "occurred_at": ts(event.occurred_at),
        "payload": bytes(event.payload).decode("utf-8"),
        "transient": int(transient),
    }
