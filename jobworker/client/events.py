"""The client's reading of a job's events: a stored page, or a stream that follows it live."""

from __future__ import annotations

import asyncio
import builtins
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from jobworker.client.base import ClientBase, as_job_id
from jobworker.errors import ConfigurationError, JobNotFoundError
from jobworker.events.bus import bus_for
from jobworker.events.model import TypedEvent, decode_event
from jobworker.events.stream import StreamService, parse_event_id
from jobworker.models import JobEvent
from jobworker.portal import Blocking


class EventReading(ClientBase):
    async def aevents(
        self, job_id: uuid.UUID | str, after_seq: int = 0, limit: int = 100
    ) -> builtins.list[JobEvent]:
        """A page of the job's kept events (kinds in `persist_kinds`), in order, after
        `after_seq`. Page on with the last event's `seq`."""
        if limit < 1:
            raise ConfigurationError("limit must be at least 1")
        storage = await self._storage()
        return await storage.events.read_events(as_job_id(job_id), after_seq, limit)

    events = Blocking(aevents)

    async def stream(
        self, job_id: uuid.UUID | str, last_event_id: str | int | None = None
    ) -> AsyncIterator[JobEvent]:
        """Follow a job's events: the stored ones after `last_event_id` (a sequence number, as a
        reader that disconnected last saw it), then live ones as they happen, ending after the
        job's terminal lifecycle event. Raises JobNotFoundError for an unknown job."""
        async for batch in self.stream_batches(job_id, last_event_id):
            for event in batch:
                yield event

    async def stream_batches(
        self, job_id: uuid.UUID | str, last_event_id: str | int | None = None
    ) -> AsyncGenerator[builtins.list[JobEvent], None]:
        """`stream`, in batches as each read finds them (one wake-up per batch: what a reader
        that fans events out to many subscribers wants)."""
        after = parse_event_id(last_event_id)
        service = await self._stream_service()
        async for batch in service.batches(as_job_id(job_id), after):
            yield batch

    async def stream_typed(
        self, job_id: uuid.UUID | str, last_event_id: str | int | None = None
    ) -> AsyncIterator[TypedEvent]:
        """`stream`, with payloads decoded: progress values as the job's progress type, the
        result as its return type (when this client's registry knows the job)."""
        job_id = as_job_id(job_id)
        record = await (await self._storage()).inspection.get(job_id)
        if record is None:
            raise JobNotFoundError(job_id)
        definition = self.registry.find(record.job_type)
        progress_type = definition.progress_type if definition else Any
        result_type = definition.result_type if definition else Any
        async for event in self.stream(job_id, last_event_id):
            yield decode_event(event, progress_type, result_type)

    async def _stream_service(self) -> StreamService:
        loop = asyncio.get_running_loop()
        service = self._streams.get(loop)
        if service is None:
            storage = await self._storage()
            service = self._streams[loop] = StreamService(
                storage, self.settings, bus_for(self.settings, storage)
            )
        return service

    async def aclose_streams(self) -> None:
        """Close the running loop's stream readers (their Redis connection and subscription)."""
        service = self._streams.pop(asyncio.get_running_loop(), None)
        if service is not None:
            await service.close()
