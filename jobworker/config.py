"""One typed settings struct, filled from keyword arguments and `JOBWORKER_*` variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec

from jobworker.errors import ConfigurationError

ENV_PREFIX = "JOBWORKER_"
S = TypeVar("S", bound=msgspec.Struct)
DEFAULT_DATABASE_URL = "sqlite:///jobworker.db"
_EVENT_KINDS = frozenset({"lifecycle", "progress", "log", "chunk", "metric", "result"})
_POSITIVE = (
    "retry_base_delay",
    "retry_max_delay",
    "lease_duration",
    "poll_interval",
    "rescue_interval",
    "cancel_poll_interval",
    "janitor_interval",
    "heartbeat_timeout",
    "connect_timeout",
    "sqlite_busy_timeout",
    "event_stream_ttl",
    "event_poll_interval",
    "redis_retry_interval",
    "beat_lease_ttl",
    "beat_tick_interval",
    "beat_retry_interval",
)
_AT_LEAST_ONE = (
    "max_args_bytes",
    "max_payload_bytes",
    "event_stream_maxlen",
    "claim_batch_size",
    "async_slots",
    "thread_slots",
    "completion_batch_size",
    "pool_size",
    "janitor_batch_size",
)


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Every knob jobworker has. Times are seconds.

    Each field can be set with an environment variable named `JOBWORKER_` + the field name in
    upper case (`JOBWORKER_DATABASE_URL`, `JOBWORKER_LEASE_DURATION`, ...); explicit arguments win.
    """

    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str | None = None

    default_queue: str = "default"
    max_args_bytes: int = 1024 * 1024  # a job's arguments, encoded; larger is refused at enqueue
    default_max_retries: int = 3
    retry_base_delay: float = 5.0
    retry_max_delay: float = 1800.0
    result_ttl: float = 86400.0

    lease_duration: float = 60.0
    poll_interval: float = 1.0
    rescue_interval: float = 15.0
    cancel_poll_interval: float = 2.0
    janitor_interval: float = 300.0
    janitor_batch_size: int = 500
    claim_batch_size: int = 100
    # A worker process's slots, unless --parallelism sets one shared set: async handlers run up
    # to async_slots at once, sync ones up to thread_slots (its thread pool's size).
    async_slots: int = 100
    thread_slots: int = 10
    completion_batch_size: int = 256
    drain_timeout: float = 30.0
    heartbeat_timeout: float = 60.0

    database_schema: str = "jobworker"
    pool_size: int = 10
    connect_timeout: float = 10.0

    sqlite_busy_timeout: float = 30.0
    sqlite_synchronous: str = "NORMAL"

    # Events: kinds kept in the database (comma-separated), the largest payload kept whole, the
    # Redis key prefix, and how long a job's live stream outlives the job.
    persist_kinds: str = "lifecycle,progress,result"
    max_payload_bytes: int = 65536
    redis_prefix: str = "jobworker:"
    event_stream_maxlen: int = 100_000
    event_stream_ttl: float = 3600.0
    event_poll_interval: float = 0.2  # readers without Redis or notifications poll this often
    redis_retry_interval: float = 5.0  # while Redis is down, events go to the database
    beat_lease_ttl: float = 15.0
    beat_tick_interval: float = 1.0
    beat_retry_interval: float = 1.0
    cron_lookback: float = 3600.0
    redis_probe_timeout: float = 3.0

    def __post_init__(self) -> None:
        for name in _POSITIVE:
            if getattr(self, name) <= 0:
                raise ConfigurationError(f"setting {name} must be greater than 0")
        for name in _AT_LEAST_ONE:
            if getattr(self, name) < 1:
                raise ConfigurationError(f"setting {name} must be at least 1")
        for broken, message in (
            (self.default_max_retries < 0, "setting default_max_retries must not be negative"),
            (
                self.retry_max_delay < self.retry_base_delay,
                "retry_max_delay must not be less than retry_base_delay",
            ),
            (
                self.drain_timeout < 0 or self.result_ttl < 0,
                "drain_timeout and result_ttl must not be negative",
            ),
            (
                self.sqlite_synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"},
                "sqlite_synchronous must be OFF, NORMAL, FULL or EXTRA",
            ),
            (
                self.cron_lookback < 0 or self.redis_probe_timeout <= 0,
                "cron_lookback must be >= 0 and redis_probe_timeout > 0",
            ),
        ):
            if broken:
                raise ConfigurationError(message)
        unknown = self.persisted_kinds() - _EVENT_KINDS
        if unknown:
            raise ConfigurationError(
                f"persist_kinds names unknown kinds {sorted(unknown)}; "
                f"choose from {', '.join(sorted(_EVENT_KINDS))}"
            )

    def persisted_kinds(self) -> frozenset[str]:
        return frozenset(kind.strip() for kind in self.persist_kinds.split(",") if kind.strip())

    def kept_kinds(self) -> frozenset[str]:
        """The kinds a job's history keeps: `persist_kinds`, and always its lifecycle and result
        events (the storage's own, read from the job's rows)."""
        return self.persisted_kinds() | {"lifecycle", "result"}

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from the environment, then `overrides` (None values are ignored)."""
        return load_struct(cls, ENV_PREFIX, environ, overrides, "setting")

    def replace(self, **changes: Any) -> Settings:
        return msgspec.structs.replace(self, **changes)


def load_struct(
    cls: type[S],
    prefix: str,
    environ: Mapping[str, str] | None,
    overrides: Mapping[str, Any],
    what: str,
) -> S:
    """A settings struct from `prefix` + FIELD variables of `environ` (the process's by
    default), then `overrides` (None values are ignored); a bad value is a ConfigurationError
    that names the field."""
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    for field in cls.__struct_fields__:
        value = environ.get(prefix + field.upper())
        if value not in (None, ""):
            raw[field] = value
    raw.update({key: value for key, value in overrides.items() if value is not None})
    try:
        return msgspec.convert(raw, cls, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigurationError(f"invalid {what}: {exc}") from None
