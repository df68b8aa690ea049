"""What every part of the client shares: where its storage comes from, and its settings."""

from __future__ import annotations

import asyncio
import uuid
import weakref
from typing import TYPE_CHECKING, Protocol

from jobworker import codec
from jobworker.clock import Clock, system_clock
from jobworker.config import Settings
from jobworker.definitions import Registry
from jobworker.errors import ConfigurationError
from jobworker.models import JobDescriptor, JobRecord
from jobworker.portal import Portal
from jobworker.storage import Storage

if TYPE_CHECKING:
    from jobworker.events.stream import StreamService


class StorageProvider(Protocol):
    async def storage(self) -> Storage:
        """The opened storage for the running event loop in this process."""
        ...


class ClientBase:
    """The state the client's parts share. Each operation is an `a`-prefixed coroutine; its
    blocking twin is derived from it with `portal.Blocking`, running it on `portal`."""

    def __init__(
        self,
        provider: StorageProvider,
        registry: Registry,
        settings: Settings,
        *,
        clock: Clock = system_clock,
        portal: Portal | None = None,
    ) -> None:
        self._provider = provider
        self.registry = registry
        self.settings = settings
        self.clock = clock
        self.portal = portal or Portal()
        # One stream reader per event loop (see `EventReading`).
        self._streams: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, StreamService] = (
            weakref.WeakKeyDictionary()
        )

    async def _storage(self) -> Storage:
        return await self._provider.storage()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self._provider!r}>"


def describe(record: JobRecord) -> JobDescriptor:
    return JobDescriptor(
        job_id=record.id,
        job_type=record.job_type,
        status=record.status,
        queue=record.queue,
        priority=record.priority,
        attempt=record.attempt,
        max_attempts=record.max_attempts,
        enqueued_at=record.enqueued_at,
        run_at=record.run_at,
        started_at=record.started_at,
        completed_at=record.completed_at,
        idempotency_key=record.idempotency_key,
        result=None if record.result is None else codec.decode(record.result),
        error=record.error,
        traceback=record.traceback,
        continues_job_id=record.continues_job_id,
        kind=record.kind,
    )


def as_job_id(job_id: uuid.UUID | str) -> uuid.UUID:
    if isinstance(job_id, uuid.UUID):
        return job_id
    try:
        return uuid.UUID(job_id)
    except (ValueError, TypeError, AttributeError):
        raise ConfigurationError(f"{job_id!r} is not a job id (a UUID)") from None
