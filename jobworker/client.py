"""Enqueueing and reading jobs: what `.delay()` and the CLI use, in sync and async forms."""

from __future__ import annotations

import asyncio
import builtins
import uuid
import weakref
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

import msgspec

from jobworker import codec
from jobworker.clock import Clock, system_clock
from jobworker.config import Settings
from jobworker.definitions import NAME_PATTERN, JobDefinition, JobFunction, Registry
from jobworker.errors import (
    ConfigurationError,
    JobArgumentsError,
    JobCancelledError,
    JobFailedError,
    JobNotFoundError,
    ResultTimeoutError,
)
from jobworker.events.bus import bus_for
from jobworker.events.model import TypedEvent, decode_event
from jobworker.events.stream import StreamService, parse_event_id
from jobworker.handle import JobHandle
from jobworker.ids import uuid7
from jobworker.models import (
    AttemptRecord,
    CancelResult,
    JobDescriptor,
    JobEvent,
    JobFilter,
    JobRecord,
    JobStatus,
    NewJob,
    QueueInfo,
    ScheduleOptions,
)
from jobworker.portal import Portal
from jobworker.recurring import BeatStatus, RecurringJob, RecurringSpec, check_schedule
from jobworker.storage import Storage


class StorageProvider(Protocol):
    async def storage(self) -> Storage:
        """The opened storage for the running event loop in this process."""
        ...


class Client:
    """Enqueue jobs and read their state. Every `aname` coroutine has a blocking twin `name`."""

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
        self._portal = portal or Portal()
        self._streams: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, StreamService] = (
            weakref.WeakKeyDictionary()
        )

    # Building jobs -------------------------------------------------------------------------

    def build_jobs(
        self,
        definition: JobDefinition,
        arguments: Sequence[Mapping[str, Any]],
        options: ScheduleOptions | None,
    ) -> list[NewJob]:
        """Validate every argument set and resolve options; raises before anything is stored."""
        options = options or ScheduleOptions()
        now = self.clock.now()
        run_at = _check_run_at(options.run_at) or now
        if options.idempotency_key is not None and len(arguments) > 1:
            raise ConfigurationError("one idempotency_key cannot be shared by a batch of jobs")
        if options.max_retries is not None and options.max_retries < 0:
            raise ConfigurationError("max_retries must not be negative")
        if options.result_ttl is not None and options.result_ttl < 0:
            raise ConfigurationError("result_ttl must not be negative")
        queue = options.queue or definition.queue or self.settings.default_queue
        if not NAME_PATTERN.match(queue):
            raise ConfigurationError(f"invalid queue name {queue!r}")
        if options.max_retries is not None:
            max_attempts = options.max_retries + 1
        else:
            max_attempts = definition.max_attempts or self.settings.default_max_retries + 1
        priority = options.priority if options.priority is not None else definition.priority
        result_ttl = options.result_ttl if options.result_ttl is not None else definition.result_ttl
        if options.continues_job_id is not None:
            # Settled by storage against the parent: queued once it succeeds, cancelled if not.
            status = JobStatus.AWAITING
        else:
            status = JobStatus.SCHEDULED if run_at > now else JobStatus.QUEUED
        encoded = []
        for index, args in enumerate(arguments):
            if not isinstance(args, Mapping):
                raise JobArgumentsError(definition.name, f"argument set {index} is not a mapping")
            encoded.append(definition.encode_args(args))
        return [
            NewJob(
                id=uuid7(now),
                job_type=definition.name,
                queue=queue,
                priority=priority,
                args=data,
                max_attempts=max_attempts,
                status=status,
                run_at=run_at,
                enqueued_at=now,
                idempotency_key=options.idempotency_key,
                continues_job_id=options.continues_job_id,
                result_ttl=result_ttl,
            )
            for data in encoded
        ]

    # Enqueue -------------------------------------------------------------------------------

    async def aenqueue_definition(
        self,
        definition: JobDefinition,
        arguments: Sequence[Mapping[str, Any]],
        options: ScheduleOptions | None,
        *,
        connection: Any = None,
    ) -> list[JobHandle[Any]]:
        jobs = self.build_jobs(definition, arguments, options)
        return await self._store(jobs, connection=connection)

    def enqueue_definition(
        self,
        definition: JobDefinition,
        arguments: Sequence[Mapping[str, Any]],
        options: ScheduleOptions | None,
    ) -> list[JobHandle[Any]]:
        # Validated on the caller's thread, so errors carry the caller's stack.
        return self._portal.call(self._store(self.build_jobs(definition, arguments, options)))

    async def _store(
        self, jobs: Sequence[NewJob], *, connection: Any = None
    ) -> list[JobHandle[Any]]:
        if not jobs:
            return []
        storage = await self._provider.storage()
        results = await storage.jobs.enqueue_many(jobs, connection=connection)
        return [
            JobHandle(result.job_id, job.job_type, self, created=result.created)
            for job, result in zip(jobs, results, strict=True)
        ]

    async def aenqueue(
        self,
        name: str,
        args: Mapping[str, Any] | None = None,
        options: ScheduleOptions | None = None,
        *,
        connection: Any = None,
    ) -> JobHandle[Any]:
        """Enqueue a registered job by its name (in the caller's transaction with `connection`)."""
        definition = self.registry.get(name)
        (handle,) = await self.aenqueue_definition(
            definition, [args or {}], options, connection=connection
        )
        return handle

    def enqueue(
        self,
        name: str,
        args: Mapping[str, Any] | None = None,
        options: ScheduleOptions | None = None,
    ) -> JobHandle[Any]:
        definition = self.registry.get(name)
        (handle,) = self.enqueue_definition(definition, [args or {}], options)
        return handle

    async def aenqueue_many(
        self, name: str, args: Sequence[Mapping[str, Any]], options: ScheduleOptions | None = None
    ) -> list[JobHandle[Any]]:
        return await self.aenqueue_definition(self.registry.get(name), args, options)

    def enqueue_many(
        self, name: str, args: Sequence[Mapping[str, Any]], options: ScheduleOptions | None = None
    ) -> list[JobHandle[Any]]:
        return self.enqueue_definition(self.registry.get(name), args, options)

    # Reading -------------------------------------------------------------------------------

    async def aget(self, job_id: uuid.UUID | str) -> JobDescriptor | None:
        """The job as a descriptor, or None if no job has this id."""
        storage = await self._provider.storage()
        record = await storage.inspection.get(_as_uuid(job_id))
        return None if record is None else describe(record)

    def get(self, job_id: uuid.UUID | str) -> JobDescriptor | None:
        return self._portal.call(self.aget(job_id))

    async def alist(
        self,
        *,
        status: JobStatus | str | None = None,
        job_type: str | None = None,
        queue: str | None = None,
        idempotency_key: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[JobDescriptor]:
        """Jobs matching every given filter, newest first, `limit` at a time from `offset`."""
        if not 1 <= limit <= 10_000 or offset < 0:
            raise ConfigurationError("limit must be 1-10000 and offset must not be negative")
        try:
            job_status = JobStatus(status) if status is not None else None
        except ValueError:
            known = ", ".join(s.value for s in JobStatus)
            raise ConfigurationError(f"unknown status {status!r} (known: {known})") from None
        filter_ = JobFilter(
            status=job_status, job_type=job_type, queue=queue, idempotency_key=idempotency_key
        )
        storage = await self._provider.storage()
        records = await storage.inspection.list_jobs(filter_, limit=limit, offset=offset)
        return [describe(record) for record in records]

    def list(self, **filters: Any) -> builtins.list[JobDescriptor]:
        return self._portal.call(self.alist(**filters))

    async def aresult(self, job_id: uuid.UUID | str, timeout: float | None = None) -> Any:
        """Wait for a job to finish; its result, decoded to its job's return type when the job
        is registered here. See `JobHandle.result` for the errors."""
        job_id = _as_uuid(job_id)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        storage = await self._provider.storage()
        pause = 0.01
        while True:
            record = await storage.inspection.get(job_id)
            if record is None:
                raise JobNotFoundError(job_id)
            if record.status is JobStatus.SUCCEEDED:
                return self._decode_result(record)
            if record.status is JobStatus.DEAD:
                raise JobFailedError(job_id, record.error, record.traceback)
            if record.status is JobStatus.CANCELLED:
                raise JobCancelledError(f"job {job_id} was cancelled: {record.error or ''}")
            if deadline is not None and loop.time() >= deadline:
                raise ResultTimeoutError(
                    f"job {job_id} did not finish within {timeout}s (it is {record.status})"
                )
            wait = pause if deadline is None else min(pause, deadline - loop.time())
            await asyncio.sleep(max(wait, 0))
            pause = min(pause * 1.5, 0.5)

    def result(self, job_id: uuid.UUID | str, timeout: float | None = None) -> Any:
        return self._portal.call(self.aresult(job_id, timeout))

    def _decode_result(self, record: JobRecord) -> Any:
        if record.result is None:
            return None
        if record.job_type in self.registry:
            return self.registry.get(record.job_type).decode_result(record.result)
        return codec.decode(record.result)

    # Operations ----------------------------------------------------------------------------

    async def acancel(self, job_id: uuid.UUID | str, reason: str = "cancelled") -> CancelResult:
        """Cancel a job. Waiting jobs (queued, scheduled, awaiting, failed) are cancelled at once,
        with the continuations waiting on them; a running job's worker is asked to stop it; a
        finished job is left as it is (`CancelResult.FINISHED`). Cancelled jobs never retry."""
        storage = await self._provider.storage()
        return await storage.control.cancel(_as_uuid(job_id), reason)

    def cancel(self, job_id: uuid.UUID | str, reason: str = "cancelled") -> CancelResult:
        return self._portal.call(self.acancel(job_id, reason))

    async def aretry(self, job_id: uuid.UUID | str) -> None:
        """Queue a dead job again; it gets one more attempt if it had used them all."""
        storage = await self._provider.storage()
        await storage.control.retry_job(_as_uuid(job_id))

    def retry(self, job_id: uuid.UUID | str) -> None:
        self._portal.call(self.aretry(job_id))

    async def adelete(self, job_id: uuid.UUID | str) -> None:
        """Delete a job that is not running, with its attempts and events."""
        storage = await self._provider.storage()
        await storage.control.delete_job(_as_uuid(job_id))

    def delete(self, job_id: uuid.UUID | str) -> None:
        self._portal.call(self.adelete(job_id))

    async def afind_by_idempotency_key(self, key: str) -> JobDescriptor | None:
        """The job holding an idempotency key, if one does."""
        found = await self.alist(idempotency_key=key, limit=1)
        return found[0] if found else None

    def find_by_idempotency_key(self, key: str) -> JobDescriptor | None:
        return self._portal.call(self.afind_by_idempotency_key(key))

    async def apause_queue(self, queue: str) -> None:
        """Workers everywhere stop claiming from `queue` within a poll interval; running jobs
        carry on."""
        await self._set_paused(queue, True)

    def pause_queue(self, queue: str) -> None:
        self._portal.call(self._set_paused(queue, True))

    async def aresume_queue(self, queue: str) -> None:
        await self._set_paused(queue, False)

    def resume_queue(self, queue: str) -> None:
        self._portal.call(self._set_paused(queue, False))

    async def _set_paused(self, queue: str, paused: bool) -> None:
        if not NAME_PATTERN.match(queue):
            raise ConfigurationError(f"invalid queue name {queue!r}")
        storage = await self._provider.storage()
        await storage.control.set_queue_paused(queue, paused)

    async def aqueues(self) -> builtins.list[QueueInfo]:
        """Every queue: its job counts by status and whether it is paused."""
        storage = await self._provider.storage()
        return await storage.inspection.queues()

    def queues(self) -> builtins.list[QueueInfo]:
        return self._portal.call(self.aqueues())

    async def aattempts(self, job_id: uuid.UUID | str) -> builtins.list[AttemptRecord]:
        """Every finished attempt of a job, oldest first."""
        storage = await self._provider.storage()
        return await storage.inspection.attempts(_as_uuid(job_id))

    def attempts(self, job_id: uuid.UUID | str) -> builtins.list[AttemptRecord]:
        return self._portal.call(self.aattempts(job_id))

    async def acounts(self) -> dict[JobStatus, int]:
        """How many jobs are in each status."""
        storage = await self._provider.storage()
        return await storage.inspection.count_by_status()

    def counts(self) -> dict[JobStatus, int]:
        return self._portal.call(self.acounts())

    # Events -------------------------------------------------------------------------------

    async def aevents(
        self, job_id: uuid.UUID | str, after_seq: int = 0, limit: int = 100
    ) -> builtins.list[JobEvent]:
        """A page of the job's kept events (kinds in `persist_kinds`), in order, after
        `after_seq`. Page on with the last event's `seq`."""
        if limit < 1:
            raise ConfigurationError("limit must be at least 1")
        storage = await self._provider.storage()
        return await storage.events.read_events(_as_uuid(job_id), after_seq, limit)

    def events(
        self, job_id: uuid.UUID | str, after_seq: int = 0, limit: int = 100
    ) -> builtins.list[JobEvent]:
        return self._portal.call(self.aevents(job_id, after_seq, limit))

    async def stream(
        self, job_id: uuid.UUID | str, last_event_id: str | int | None = None
    ) -> AsyncIterator[JobEvent]:
        """Follow a job's events: the stored ones after `last_event_id` (a sequence number, as a
        reader that disconnected last saw it), then live ones as they happen, ending after the
        job's terminal lifecycle event. Raises JobNotFoundError for an unknown job."""
        after = parse_event_id(last_event_id)
        service = await self._stream_service()
        async for batch in service.batches(_as_uuid(job_id), after):
            for event in batch:
                yield event

    async def stream_typed(
        self, job_id: uuid.UUID | str, last_event_id: str | int | None = None
    ) -> AsyncIterator[TypedEvent]:
        """`stream`, with payloads decoded: progress values as the job's progress type, the
        result as its return type (when this client's registry knows the job)."""
        job_id = _as_uuid(job_id)
        record = await (await self._provider.storage()).inspection.get(job_id)
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
            storage = await self._provider.storage()
            service = self._streams[loop] = StreamService(
                storage, self.settings, bus_for(self.settings, storage)
            )
        return service

    async def aclose_streams(self) -> None:
        """Close the running loop's stream readers (their Redis connection and subscription)."""
        service = self._streams.pop(asyncio.get_running_loop(), None)
        if service is not None:
            await service.close()

    # Recurring jobs (fired by `jobworker beat`) ----------------------------------------------

    async def aschedule_recurring(
        self,
        name: str,
        cron: str,
        job: str | JobFunction[..., Any],
        args: Mapping[str, Any] | None = None,
        *,
        timezone: str = "UTC",
    ) -> RecurringJob:
        """Add (or update) a recurring definition: `job` with `args` at every fire of `cron` in
        `timezone`. A bad name, expression, zone or argument raises here; nothing is stored."""
        if not NAME_PATTERN.match(name):
            raise ConfigurationError(f"invalid recurring job name {name!r}")
        check_schedule(cron, timezone)
        definition = self.registry.get(job if isinstance(job, str) else job.name)
        spec = RecurringSpec(
            name=name,
            job_type=definition.name,
            cron=cron,
            timezone=timezone,
            args=definition.encode_args(args or {}),
        )
        storage = await self._provider.storage()
        await storage.recurring.upsert_recurring([spec])
        return await self._recurring(name)

    def schedule_recurring(
        self,
        name: str,
        cron: str,
        job: str | JobFunction[..., Any],
        args: Mapping[str, Any] | None = None,
        *,
        timezone: str = "UTC",
    ) -> RecurringJob:
        return self._portal.call(self.aschedule_recurring(name, cron, job, args, timezone=timezone))

    async def alist_recurring(self) -> builtins.list[RecurringJob]:
        """Every recurring definition, by name."""
        storage = await self._provider.storage()
        return await storage.recurring.list_recurring()

    def list_recurring(self) -> builtins.list[RecurringJob]:
        return self._portal.call(self.alist_recurring())

    async def aenable_recurring(self, name: str) -> None:
        """Fire it again from its next scheduled time (missed fires are not caught up)."""
        await self._set_recurring_enabled(name, True)

    def enable_recurring(self, name: str) -> None:
        self._portal.call(self._set_recurring_enabled(name, True))

    async def adisable_recurring(self, name: str) -> None:
        """Stop firing it (beat keeps it disabled across restarts)."""
        await self._set_recurring_enabled(name, False)

    def disable_recurring(self, name: str) -> None:
        self._portal.call(self._set_recurring_enabled(name, False))

    async def _set_recurring_enabled(self, name: str, enabled: bool) -> None:
        storage = await self._provider.storage()
        if not await storage.recurring.set_recurring_enabled(name, enabled):
            raise ConfigurationError(f"no recurring job named {name!r}")

    async def arun_recurring(self, name: str) -> JobHandle[Any]:
        """Enqueue a recurring definition's job now, once, outside its schedule (its next
        scheduled fire still happens)."""
        record = await self._recurring(name)
        arguments = msgspec.json.decode(record.args)
        (handle,) = await self.aenqueue_definition(
            self.registry.get(record.job_type), [arguments], None
        )
        return handle

    def run_recurring(self, name: str) -> JobHandle[Any]:
        return self._portal.call(self.arun_recurring(name))

    async def _recurring(self, name: str) -> RecurringJob:
        for record in await self.alist_recurring():
            if record.name == name:
                return record
        raise ConfigurationError(f"no recurring job named {name!r}")

    async def abeat_status(self) -> BeatStatus:
        """Who leads beat (None: no live leader), since when and by which mechanism, and every
        recurring definition with its next fire."""
        storage = await self._provider.storage()
        leader = await storage.leadership.beat_leader()
        now = self.clock.now()
        recurring = [
            record
            if record.next_fire_at is not None or not record.enabled
            else msgspec.structs.replace(record, next_fire_at=record.schedule().next_fire(now))
            for record in await storage.recurring.list_recurring()
        ]
        return BeatStatus(leader=leader, recurring=recurring)

    def beat_status(self) -> BeatStatus:
        return self._portal.call(self.abeat_status())


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
    )


def _check_run_at(run_at: datetime | None) -> datetime | None:
    if run_at is not None and run_at.tzinfo is None:
        raise ConfigurationError(
            "run_at must be timezone-aware (e.g. datetime.now(UTC) + timedelta(minutes=5))"
        )
    return run_at


def _as_uuid(job_id: uuid.UUID | str) -> uuid.UUID:
    if isinstance(job_id, uuid.UUID):
        return job_id
    try:
        return uuid.UUID(job_id)
    except (ValueError, TypeError, AttributeError):
        raise ConfigurationError(f"{job_id!r} is not a job id (a UUID)") from None
