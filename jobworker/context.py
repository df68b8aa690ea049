"""The context every handler receives as its first argument: what it knows about its job, and
the events it streams (progress, logs, chunks, metrics).

Every emitting method works in both kinds of handler: an async handler awaits it (which now and
then lets the worker's event loop run, so that events are published while the handler streams,
and holds the handler back briefly when the worker's buffer is full), a sync one just calls it.
Either way the event is numbered and handed to the worker at the moment of the call; nothing
waits on a round trip.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Generator
from datetime import datetime
from typing import Any, Generic, TypeVar, cast

import msgspec

from jobworker import codec
from jobworker.display import printable
from jobworker.errors import JobCancelledError, JobEventError
from jobworker.models import EventKind
from jobworker.payloads import Chunk, Log, Metric, Progress, truncate_payload

# Where a context sends its events: (seq, kind, occurred at in Unix seconds, payload JSON); what
# it returns, if anything, an async handler awaits.
Emit = Callable[[int, EventKind, float, msgspec.Raw], Awaitable[None] | None]

# `App(on_error=fn)`: `fn(exc, ctx)` for each attempt that failed by raising (or timing out); a
# plain function or a coroutine function.
ErrorHook = Callable[[BaseException, "JobContext[Any]"], Awaitable[None] | None]

P = TypeVar("P")

logger = logging.getLogger("jobworker.job")


class JobContext(Generic[P]):
    """What a running handler knows about its job, and the way it reports back.

    `P` is the job's progress type (`JobContext[ExportProgress]`); handlers that report no typed
    progress annotate plain `JobContext`.
    """

    def __init__(
        self,
        *,
        job_id: uuid.UUID,
        job_type: str,
        attempt: int,
        max_attempts: int,
        queue: str,
        enqueued_at: datetime,
        worker_id: str = "",
        emit: Emit | None = None,
        first_seq: int = 1,
        progress_type: Any = Any,
        max_payload_bytes: int = 65536,
        timestamp: Callable[[], float] = time.time,
        correlation_id: str | None = None,
    ) -> None:
        self.job_id = job_id
        self.job_type = job_type
        self.attempt = attempt
        self.max_attempts = max_attempts
        self.queue = queue
        self.enqueued_at = enqueued_at
        self.worker_id = worker_id
        self._cancelled = False
        self._logger: logging.LoggerAdapter[logging.Logger] | None = None
        self._emit: Emit = emit or _drop
        self._last_seq = first_seq - 1
        self._closed = emit is None  # nowhere to send events: every one is dropped at once
        self._progress_type = progress_type
        self._max_payload_bytes = max_payload_bytes
        self._timestamp = timestamp
        self._correlation_id = correlation_id

    # Events --------------------------------------------------------------------------------

    def report(self, progress: P) -> Emitted:
        """Typed progress: a value of the job's progress type (`JobContext[ExportProgress]`),
        validated by msgspec; a value of another shape raises JobEventError."""
        if self._progress_type is not Any:
            try:
                progress = msgspec.convert(
                    msgspec.to_builtins(progress), self._progress_type, strict=False
                )
            except (msgspec.ValidationError, TypeError) as exc:
                raise JobEventError(
                    f"progress of job {self.job_type!r} is invalid: {exc}"
                ) from None
        return self.emit(EventKind.PROGRESS, Progress(value=progress))

    def progress(
        self, done: float, total: float | None = None, label: str | None = None
    ) -> Emitted:
        """Counted progress: `done` of `total` (what `jobworker tail` draws as a bar)."""
        return self.emit(EventKind.PROGRESS, Progress(done=done, total=total, label=label))

    def chunk(self, value: Any) -> Emitted:
        """Streamed output: text (an LLM's tokens, a line of a report) or any encodable value."""
        if self._closed:
            return _DONE
        try:
            if value.__class__ is str:  # the common case, without building a Chunk
                data = b'{"text":' + _encode(value) + b"}"
            else:
                data = _encode(Chunk(data=value))
        except (TypeError, msgspec.EncodeError, UnicodeEncodeError) as exc:
            raise JobEventError(f"a chunk event of job {self.job_type!r}: {exc}") from None
        # `_send`, inlined: this is the method a streaming handler calls per token.
        if len(data) > self._max_payload_bytes:
            data = truncate_payload(data, self._max_payload_bytes)
        self._last_seq = seq = self._last_seq + 1
        waiting = self._emit(seq, _CHUNK, self._timestamp(), msgspec.Raw(data))
        return _DONE if waiting is None else Emitted(waiting)

    def metric(self, name: str, value: float) -> Emitted:
        return self.emit(EventKind.METRIC, Metric(name=name, value=float(value)))

    def emit(self, kind: EventKind, payload: Any) -> Emitted:
        """Number an event and hand it to the worker. After the attempt has ended (a thread that
        outlived its timeout), events are dropped."""
        if self._closed:
            return _DONE
        try:
            data = _encode(payload)
        except (TypeError, msgspec.EncodeError, UnicodeEncodeError) as exc:
            raise JobEventError(f"a {kind.value} event of job {self.job_type!r}: {exc}") from None
        return self._send(kind, data)

    def _send(self, kind: EventKind, data: bytes) -> Emitted:
        if len(data) > self._max_payload_bytes:
            data = truncate_payload(data, self._max_payload_bytes)
        self._last_seq = seq = self._last_seq + 1
        waiting = self._emit(seq, kind, self._timestamp(), msgspec.Raw(data))
        return _DONE if waiting is None else Emitted(waiting)

    @property
    def last_seq(self) -> int:
        """The sequence of the last event this attempt emitted (its first minus one if none)."""
        return self._last_seq

    def close_events(self) -> int:
        """The attempt has ended: later events are dropped. Returns the last sequence used."""
        self._closed = True
        return self._last_seq

    @functools.cached_property
    def log(self) -> EventLog:
        """`ctx.log.info("rows exported", count=n)`: structured log events of the job."""
        return EventLog(self)

    @property
    def correlation_id(self) -> str:
        """The attempt's trace id (32 hex digits) when tracing is on (docs/tracing.md), else the
        job id as 32 hex digits: either way one id for the job's logs and outgoing calls."""
        return self._correlation_id or self.job_id.hex

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger whose records carry the job's id, name and attempt."""
        if self._logger is None:
            extra = {"job_id": str(self.job_id), "job_type": self.job_type, "attempt": self.attempt}
            self._logger = logging.LoggerAdapter(logger, extra)
        return self._logger

    @property
    def is_last_attempt(self) -> bool:
        return self.attempt >= self.max_attempts

    @property
    def cancel_requested(self) -> bool:
        """True once the job has been asked to stop (shutdown past the drain timeout, cancel)."""
        return self._cancelled

    def raise_if_cancelled(self) -> None:
        if self._cancelled:
            raise JobCancelledError(f"job {self.job_id} was asked to stop")

    def request_cancel(self) -> None:
        """Called by the worker; handlers observe it through `cancel_requested`."""
        self._cancelled = True  # a plain flag: read from handler threads, set from the loop

    def __repr__(self) -> str:
        return f"<JobContext {self.job_type} {self.job_id} attempt {self.attempt}>"


class Emitted:
    """What an emitting method returns: awaiting it (in an async handler) waits while the
    worker's event buffer is full, and every few hundred events yields to the event loop once;
    a sync handler may ignore it."""

    __slots__ = ("_waiting",)

    def __init__(self, waiting: Awaitable[None] | None = None) -> None:
        self._waiting = waiting

    def __await__(self) -> Generator[Any, None, None]:
        if self._waiting is None:
            return _NOTHING
        return self._waiting.__await__()


# What `__await__` returns when there is nothing to wait for: an iterator that is already done
# (shared: a spent iterator stays spent), so `await ctx.chunk(...)` costs no generator.
_NOTHING = cast(Generator[Any, None, None], iter(()))
_DONE = Emitted()


class EventLog:
    """`ctx.log.info("rows exported", count=n)`: a structured log event of the job, also written
    to the `jobworker.job` logger."""

    _LEVELS = {
        "trace": 5,
        "debug": logging.DEBUG,
        "info": logging.INFO,
        "warn": logging.WARNING,
        "error": logging.ERROR,
    }

    def __init__(self, ctx: JobContext[Any]) -> None:
        self._ctx = ctx

    def trace(self, message: str, **data: Any) -> Emitted:
        return self._log("trace", message, data)

    def debug(self, message: str, **data: Any) -> Emitted:
        return self._log("debug", message, data)

    def info(self, message: str, **data: Any) -> Emitted:
        return self._log("info", message, data)

    def warn(self, message: str, **data: Any) -> Emitted:
        return self._log("warn", message, data)

    warning = warn

    def error(self, message: str, **data: Any) -> Emitted:
        return self._log("error", message, data)

    def _log(self, level: str, message: str, data: dict[str, Any]) -> Emitted:
        number = self._LEVELS[level]
        if self._ctx.logger.isEnabledFor(number):
            shown = printable(f"{message} {data}" if data else message)
            self._ctx.logger.log(number, "%s", shown)
        return self._ctx.emit(EventKind.LOG, Log(level=level, message=message, data=data))


_encode = codec.encode
_CHUNK = EventKind.CHUNK


def _drop(*_event: Any) -> None:
    return None
