"""The JSON the HTTP surface speaks: a job, and each kind of event, as browsers read them.

This is a published contract (docs/web.md lists every field): names are camelCase, statuses and
log levels lower case, and a field is never renamed or removed, only added. A browser client
written for the reference package's event stream reads it unchanged: lifecycle `{status}`,
progress `{done, total, label}`, log `{level, message, dataJson}` (a JSON string or null), chunk
`{value}`, metric `{name, value}`, result `{resultJson}` (a JSON string). Every event object also
carries `jobId`, `seq`, `kind` and `occurredAt`.

`typed_event` reads an event object back, for Python readers of the HTTP surface (web/follow.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import msgspec

from jobworker.events.model import TypedEvent, is_truncated
from jobworker.models import AttemptRecord, EventKind, JobDescriptor, JobEvent
from jobworker.payloads import TRUNCATED_MARKER, Chunk, Lifecycle, Log, Metric, Progress, Result

__all__ = [
    "AttemptJson",
    "JobJson",
    "attempt_object",
    "event_json",
    "event_object",
    "job_json",
    "job_object",
    "typed_event",
]

_encoder = msgspec.json.Encoder()


class JobJson(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """A job as the HTTP surface shows it (the reference's job descriptor, and more)."""

    job_id: uuid.UUID
    job_type: str
    kind: str
    status: str
    queue: str
    priority: int
    attempt: int
    max_attempts: int
    enqueued_at: datetime
    run_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    idempotency_key: str | None
    continues_job_id: uuid.UUID | None
    result_json: str | None  # the result as JSON text, once the job succeeded
    error_message: str | None
    traceback: str | None
    args_json: str  # the job's arguments as JSON text (what an authorization hook may check)


def job_object(job: JobDescriptor) -> JobJson:
    result = None if job.result is None else _encoder.encode(job.result).decode()
    return JobJson(
        job_id=job.job_id,
        job_type=job.job_type,
        kind=job.kind.value,
        status=job.status.value,
        queue=job.queue,
        priority=job.priority,
        attempt=job.attempt,
        max_attempts=job.max_attempts,
        enqueued_at=job.enqueued_at,
        run_at=job.run_at,
        started_at=job.started_at,
        completed_at=job.completed_at,
        idempotency_key=job.idempotency_key,
        continues_job_id=job.continues_job_id,
        result_json=result,
        error_message=job.error,
        traceback=job.traceback,
        args_json=_encoder.encode(job.args).decode(),
    )


def job_json(job: JobDescriptor) -> bytes:
    return _encoder.encode(job_object(job))


class AttemptJson(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """One finished attempt of a job: who ran it, when, and how it ended."""

    job_id: uuid.UUID
    attempt: int
    worker: str
    started_at: datetime
    ended_at: datetime
    outcome: str  # succeeded, failed, dead, released, lost, cancelled
    error: str | None
    traceback: str | None


def attempt_object(record: AttemptRecord) -> AttemptJson:
    return AttemptJson(
        job_id=record.job_id,
        attempt=record.attempt,
        worker=record.worker,
        started_at=record.started_at,
        ended_at=record.ended_at,
        outcome=record.outcome.value,
        error=record.error,
        traceback=record.traceback,
    )


def event_object(event: JobEvent) -> dict[str, Any]:
    """The event's JSON object: the fields of its kind, then `jobId`, `seq`, `kind`,
    `occurredAt`. A payload the worker truncated (too large) keeps the fields its kind promises,
    filled from the truncation marker, with `truncated: true`, `size` and `preview`."""
    raw = bytes(event.payload)
    fields = _truncated(event.kind, raw) if is_truncated(event) else _FIELDS[event.kind](raw)
    fields["jobId"] = str(event.job_id)
    fields["seq"] = event.seq
    fields["kind"] = event.kind.value
    fields["occurredAt"] = event.occurred_at
    return fields


def event_json(event: JobEvent) -> bytes:
    """`event_object` as one line of JSON (no raw newline: it fits one SSE `data:` line)."""
    return _encoder.encode(event_object(event))


def _lifecycle(raw: bytes) -> dict[str, Any]:
    value = msgspec.json.decode(raw, type=Lifecycle)
    return {
        "status": value.status.value,
        "attempt": value.attempt,
        "error": value.error,
        "retryAt": value.retry_at,
    }


def _progress(raw: bytes) -> dict[str, Any]:
    value = msgspec.json.decode(raw, type=Progress)
    return {"done": value.done, "total": value.total, "label": value.label, "value": value.value}


def _log(raw: bytes) -> dict[str, Any]:
    value = msgspec.json.decode(raw, type=Log)
    data = _encoder.encode(value.data).decode() if value.data else None
    return {"level": value.level, "message": value.message, "dataJson": data}


def _chunk(raw: bytes) -> dict[str, Any]:
    value = msgspec.json.decode(raw, type=Chunk)
    if value.text is not None:
        return {"value": value.text, "text": value.text}
    return {"value": value.data, "data": value.data}


def _metric(raw: bytes) -> dict[str, Any]:
    value = msgspec.json.decode(raw, type=Metric)
    return {"name": value.name, "value": value.value}


def _result(raw: bytes) -> dict[str, Any]:
    value = msgspec.json.decode(raw, type=Result)
    return {"resultJson": bytes(value.value).decode()}


_FIELDS: dict[EventKind, Callable[[bytes], dict[str, Any]]] = {
    EventKind.LIFECYCLE: _lifecycle,
    EventKind.PROGRESS: _progress,
    EventKind.LOG: _log,
    EventKind.CHUNK: _chunk,
    EventKind.METRIC: _metric,
    EventKind.RESULT: _result,
}


def _truncated(kind: EventKind, raw: bytes) -> dict[str, Any]:
    marker = msgspec.json.decode(raw)
    size, preview = marker.get("size"), marker.get("preview", "")
    note = f"[truncated: {size} bytes]"
    fields: dict[str, Any] = {
        EventKind.PROGRESS: {"done": None, "total": None, "label": note, "value": None},
        EventKind.LOG: {"level": "warn", "message": note, "dataJson": None},
        EventKind.CHUNK: {"value": preview},
        EventKind.METRIC: {"name": note, "value": None},
        EventKind.RESULT: {"resultJson": None},
    }.get(kind, {"status": None})
    return {**fields, "truncated": True, "size": size, "preview": preview}


def typed_event(
    fields: Mapping[str, Any], progress_type: Any = Any, result_type: Any = Any
) -> TypedEvent:
    """An event object read back, its payload decoded as `events.model.decode_event` decodes a
    stored event: progress values as `progress_type`, the result as `result_type`, a truncated
    payload as the truncation marker (a dict)."""
    kind = EventKind(fields["kind"])
    data: Any
    if fields.get("truncated") is True:
        data = {
            TRUNCATED_MARKER: True,
            "size": fields.get("size"),
            "preview": fields.get("preview"),
        }
    elif kind is EventKind.RESULT:
        data = msgspec.json.decode(fields["resultJson"], type=result_type)
    elif kind is EventKind.PROGRESS:
        value = fields.get("value")
        if value is not None and progress_type is not Any:
            value = msgspec.convert(value, progress_type)
        data = msgspec.convert(
            {**_known(fields, ("done", "total", "label")), "value": value}, Progress
        )
    elif kind is EventKind.LOG:
        extra = fields.get("dataJson")
        data = Log(
            level=fields["level"],
            message=fields["message"],
            data=msgspec.json.decode(extra) if extra else {},
        )
    elif kind is EventKind.CHUNK:
        data = Chunk(text=fields["text"]) if "text" in fields else Chunk(data=fields.get("data"))
    elif kind is EventKind.LIFECYCLE:
        known = _known(fields, ("status", "attempt", "error"))
        data = msgspec.convert({**known, "retry_at": fields.get("retryAt")}, Lifecycle)
    else:
        data = msgspec.convert(_known(fields, ("name", "value")), Metric)
    return TypedEvent(
        job_id=uuid.UUID(fields["jobId"]),
        seq=int(fields["seq"]),
        kind=kind,
        occurred_at=msgspec.convert(fields["occurredAt"], datetime),
        data=data,
    )


def _known(fields: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {name: fields[name] for name in names if fields.get(name) is not None}
