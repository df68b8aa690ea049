"""Log formats: the escaped text lines and one JSON object a line, with the running attempt's
fields.

The worker sets `job_fields` around each attempt (a context variable: a sync handler's thread
runs in a copy of the attempt's context, so its log lines get them too); a record's own `extra`
(`ctx.logger` passes job_id, job_type and attempt) wins over them. The trace id comes from the
current OpenTelemetry span when `opentelemetry` is installed and a span is recording.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any, Literal

import msgspec

from jobworker.display import EscapingFormatter, printable

__all__ = [
    "FORMATS",
    "TEXT_FORMAT",
    "JobFields",
    "JsonFormatter",
    "LogFormat",
    "configure",
    "dict_config",
    "formatter",
    "job_fields",
]

LogFormat = Literal["text", "json"]
FORMATS: tuple[LogFormat, ...] = ("text", "json")

TEXT_FORMAT = "%(asctime)s %(levelname)-7s [%(process)d] %(name)s: %(message)s"


@dataclass(frozen=True, slots=True)
class JobFields:
    """What a JSON log line says about the job it was logged under; None: not known there."""

    worker: str | None = None
    job_id: uuid.UUID | str | None = None  # written as text; a UUID is only turned into one then
    job_type: str | None = None
    attempt: int | None = None
    queue: str | None = None


job_fields: contextvars.ContextVar[JobFields] = contextvars.ContextVar(
    "jobworker_log_fields",
    default=JobFields(),  # noqa: B039 - frozen: never changed, only replaced
)

_JOB_KEYS = ("job_id", "job_type", "attempt", "queue")


class JsonFormatter(logging.Formatter):
    """One JSON object a line: `time` (UTC, ISO 8601), `level`, `logger`, `message`, `process`,
    then `job_id`, `job_type`, `attempt`, `queue`, `worker`, `trace_id` when known, and
    `exc_info` / `stack_info` (text) when the record has them."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        line.update(_job_fields(record))
        trace_id = getattr(record, "trace_id", None) or _trace_id()
        if trace_id:
            line["trace_id"] = trace_id
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc_info"] = record.exc_text
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        # msgspec escapes the C0 controls; `printable` writes DEL and the C1 controls (which a
        # terminal may act on) as \\u escapes too, which stay valid JSON inside the strings.
        return printable(_encode(line))


def _utc(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def _job_fields(record: logging.LogRecord) -> dict[str, Any]:
    current = job_fields.get()
    own = {key: getattr(record, key) for key in (*_JOB_KEYS, "worker") if hasattr(record, key)}
    fields: dict[str, Any] = {}
    if "job_id" not in own or str(own["job_id"]) == str(current.job_id):
        # The attempt running here; a line about another job (own job_id) takes none of it.
        fields.update((key, getattr(current, key)) for key in _JOB_KEYS)
    fields["worker"] = current.worker
    fields.update(own)
    if "job_id" in fields and fields["job_id"] is not None:
        fields["job_id"] = str(fields["job_id"])
    return {key: fields[key] for key in (*_JOB_KEYS, "worker") if fields.get(key) is not None}


@functools.cache
def _current_span() -> Any:
    """OpenTelemetry's `get_current_span`, or None without the package (imported once)."""
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    return trace.get_current_span


def _trace_id() -> str | None:
    current_span = _current_span()
    if current_span is None:
        return None
    context = current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def _encode(line: dict[str, Any]) -> str:
    try:
        return msgspec.json.encode(line).decode()
    except (TypeError, UnicodeEncodeError, msgspec.EncodeError):
        # An unencodable extra, or a lone surrogate from undecodable bytes: written as text.
        plain = {key: _plain(value) for key, value in line.items()}
        return msgspec.json.encode(plain).decode()


def _plain(value: Any) -> Any:
    if isinstance(value, int | float | bool) or value is None:
        return value
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


def formatter(log_format: str) -> logging.Formatter:
    """The formatter of a `--log-format` value; anything else is a ValueError."""
    if log_format == "text":
        return EscapingFormatter(TEXT_FORMAT)  # job text in log lines, escaped
    if log_format == "json":
        return JsonFormatter()
    raise ValueError(f"unknown log format {log_format!r}: expected one of {', '.join(FORMATS)}")


def configure(level: str, log_format: str, stream: IO[str] | None = None) -> None:
    """Log at `level` and above to `stream` (stderr) in `log_format`, for the whole process and
    the processes it forks."""
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(formatter(log_format))
    logging.basicConfig(level=level.upper(), handlers=[handler])


def dict_config(level: str, log_format: str) -> dict[str, Any]:
    """The same logging as a `logging.config.dictConfig` dictionary (what uvicorn applies in
    each of its processes)."""
    formatter(log_format)  # a clear error now rather than inside uvicorn
    if log_format == "json":
        line: dict[str, Any] = {"()": f"{__name__}.{JsonFormatter.__qualname__}"}
    else:
        escaping = f"{EscapingFormatter.__module__}.{EscapingFormatter.__qualname__}"
        line = {"()": escaping, "fmt": TEXT_FORMAT}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"line": line},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "line",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
    }
