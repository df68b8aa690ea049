"""Job events: the model every running job's progress, logs, chunks and metrics travel in, and
the buses that carry them live."""

from jobworker.events.model import (
    TRUNCATED_MARKER,
    EventKind,
    JobEvent,
    encode_payload,
)

__all__ = ["TRUNCATED_MARKER", "EventKind", "JobEvent", "encode_payload"]
