"""The event model: `{seq, kind, occurred_at, payload}` per job.

`seq` numbers a job's events from 1 without gaps, across its attempts and workers. Payloads
are JSON encoded by msgspec; one larger than the configured limit is replaced by a truncation
marker rather than failing the job.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

import msgspec

from jobworker import codec


class EventKind(enum.StrEnum):
    LIFECYCLE = "lifecycle"  # every status change, emitted by the framework
    PROGRESS = "progress"  # ctx.report(...) / ctx.progress(done, total, label)
    LOG = "log"  # ctx.log.info(...)
    CHUNK = "chunk"  # ctx.chunk(...): streamed text or rows
    METRIC = "metric"  # ctx.metric(name, value)
    RESULT = "result"  # the job's result, once it succeeded


class JobEvent(msgspec.Struct, frozen=True, kw_only=True):
    job_id: uuid.UUID
    seq: int
    kind: EventKind
    occurred_at: datetime
    payload: msgspec.Raw  # JSON, as the handler's types encoded it

    def decoded(self, type: Any = Any) -> Any:
        return codec.decode(bytes(self.payload), type)


TRUNCATED_MARKER = "jobworker.truncated"


def encode_payload(value: Any, max_bytes: int) -> bytes:
    """JSON for `value`; if it is larger than `max_bytes`, a small object that says so (with the
    size and the start of the text) takes its place: an oversized event never fails a job."""
    data = codec.encode(value)
    if len(data) <= max_bytes:
        return data
    preview = data[: max(0, min(max_bytes // 2, 1024))].decode("utf-8", errors="ignore")
    return codec.encode({TRUNCATED_MARKER: True, "size": len(data), "preview": preview})
