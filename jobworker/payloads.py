"""What each kind of job event carries. A leaf: the job context builds these, the storage and
the readers decode them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from jobworker import codec
from jobworker.models import TERMINAL_STATUSES, EventKind, JobStatus


class Lifecycle(msgspec.Struct, frozen=True, kw_only=True):
    """A status change (written by the storage in the same transaction as the change)."""

    status: JobStatus
    attempt: int
    error: str | None = None
    retry_at: datetime | None = None  # when a failed attempt runs again

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class Progress(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """`ctx.progress(done, total, label)` fills the counters; `ctx.report(value)` the value."""

    done: float | None = None
    total: float | None = None
    label: str | None = None
    value: Any = None


class Log(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    level: str
    message: str
    data: dict[str, Any] = {}


class Chunk(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Streamed output: `text` for strings, `data` for anything else."""

    text: str | None = None
    data: Any = None


class Metric(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    value: float


class Result(msgspec.Struct, frozen=True, kw_only=True):
    value: msgspec.Raw  # the job's result, as its return type encoded it


PAYLOAD_TYPES: dict[EventKind, type[msgspec.Struct]] = {
    EventKind.LIFECYCLE: Lifecycle,
    EventKind.PROGRESS: Progress,
    EventKind.LOG: Log,
    EventKind.CHUNK: Chunk,
    EventKind.METRIC: Metric,
    EventKind.RESULT: Result,
}

TRUNCATED_MARKER = "jobworker.truncated"


def encode_payload(value: Any, max_bytes: int) -> bytes:
    """JSON for `value`; if it is larger than `max_bytes`, a small object that says so (with the
    size and the start of the text) takes its place: an oversized event never fails a job."""
    data = codec.encode(value)
    if len(data) <= max_bytes:
        return data
    return truncate_payload(data, max_bytes)


def truncate_payload(data: bytes, max_bytes: int) -> bytes:
    """The truncation marker that stands for the JSON `data`, too large to send."""
    preview = data[: max(0, min(max_bytes // 2, 1024))].decode("utf-8", errors="ignore")
    return codec.encode({TRUNCATED_MARKER: True, "size": len(data), "preview": preview})
