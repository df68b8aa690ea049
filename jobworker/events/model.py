"""The event model: `{seq, kind, occurred_at, payload}` per job, and the payload of each kind.

`seq` numbers a job's events from 1 without gaps, across its attempts and workers. Payloads
are JSON encoded by msgspec; one larger than the configured limit is replaced by a truncation
marker rather than failing the job.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec

from jobworker.models import TERMINAL_STATUSES, EventKind, JobEvent
from jobworker.payloads import (
    PAYLOAD_TYPES,
    TRUNCATED_MARKER,
    Chunk,
    Lifecycle,
    Log,
    Metric,
    Progress,
    Result,
    encode_payload,
)

# One event on its way to a live bus: (seq, kind, at as Unix seconds, payload JSON). A tuple, not
# a struct: a handler streaming hundreds of thousands of events a second builds one per event.
LiveEvent = tuple[int, EventKind, float, msgspec.Raw]


def is_truncated(event: JobEvent) -> bool:
    """The event's payload was too large and was replaced by the truncation marker."""
    raw = bytes(event.payload)
    if TRUNCATED_MARKER.encode() not in raw:
        return False
    value = msgspec.json.decode(raw)
    return isinstance(value, dict) and value.get(TRUNCATED_MARKER) is True


def lifecycle_of(event: JobEvent) -> Lifecycle | None:
    if event.kind is not EventKind.LIFECYCLE:
        return None
    return msgspec.json.decode(bytes(event.payload), type=Lifecycle)


def is_terminal(event: JobEvent) -> bool:
    """The last event of a job: its lifecycle event into succeeded, dead or cancelled."""
    lifecycle = lifecycle_of(event)
    return lifecycle is not None and lifecycle.terminal


__all__ = [
    "PAYLOAD_TYPES",
    "TERMINAL_STATUSES",
    "TRUNCATED_MARKER",
    "Chunk",
    "EventKind",
    "JobEvent",
    "Lifecycle",
    "LiveEvent",
    "Log",
    "Metric",
    "Progress",
    "Result",
    "TypedEvent",
    "decode_event",
    "encode_payload",
    "is_terminal",
    "lifecycle_of",
]


class TypedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event with its payload decoded: `Lifecycle`, `Progress` (whose `value` is the job's
    progress type), `Log`, `Chunk`, `Metric`, or the job's result itself for `result`. A payload
    that was truncated stays the truncation marker (a dict)."""

    job_id: uuid.UUID
    seq: int
    kind: EventKind
    occurred_at: datetime
    data: Any

    @property
    def id(self) -> str:
        return str(self.seq)


def decode_event(event: JobEvent, progress_type: Any = Any, result_type: Any = Any) -> TypedEvent:
    """`event` with its payload as the types of its kind (and of its job, when given)."""
    raw = bytes(event.payload)
    data: Any
    if is_truncated(event):
        data = msgspec.json.decode(raw)
    elif event.kind is EventKind.RESULT:
        value = msgspec.json.decode(raw, type=Result).value
        data = msgspec.json.decode(bytes(value), type=result_type)
    elif event.kind is EventKind.PROGRESS:
        progress = msgspec.json.decode(raw, type=Progress)
        if progress.value is not None and progress_type is not Any:
            progress = msgspec.structs.replace(
                progress, value=msgspec.convert(progress.value, progress_type)
            )
        data = progress
    else:
        data = msgspec.json.decode(raw, type=PAYLOAD_TYPES[event.kind])
    return TypedEvent(
        job_id=event.job_id,
        seq=event.seq,
        kind=event.kind,
        occurred_at=event.occurred_at,
        data=data,
    )
