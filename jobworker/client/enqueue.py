"""The client's enqueueing: a call becomes `NewJob` rows (`jobworker.enqueueing`), stored in one
transaction, and handles to them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from jobworker import tracing
from jobworker.client.events import EventReading
from jobworker.client.inspection import Inspection
from jobworker.definitions import JobDefinition
from jobworker.enqueueing import build_jobs, restamped
from jobworker.errors import ConfigurationError
from jobworker.handle import JobHandle
from jobworker.models import NewJob, ScheduleOptions
from jobworker.portal import Blocking


class Enqueueing(Inspection, EventReading):
    """Enqueueing returns handles, which read their job through inspection and events."""

    async def aenqueue_definition(
        self,
        definition: JobDefinition,
        arguments: Sequence[Mapping[str, Any]],
        options: ScheduleOptions | None,
        *,
        connection: Any = None,
    ) -> list[JobHandle[Any]]:
        """Validate every argument set, then store them all in one transaction (in the caller's
        own transaction with `connection`, an asyncpg connection)."""
        jobs = build_jobs(definition, arguments, options, self.settings, self.clock.now())
        storage = await self._storage()
        if storage.clock is not self.clock:  # validated: now stamped on the database's clock
            jobs = restamped(jobs, options, storage.clock.now())
        with tracing.sending(jobs) as carried:
            if carried is not None:
                jobs = [msgspec.structs.replace(job, trace_context=carried) for job in jobs]
            return await self._store(jobs, connection=connection)

    enqueue_definition = Blocking(aenqueue_definition)

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

    enqueue = Blocking(aenqueue)

    async def aenqueue_many(
        self, name: str, args: Sequence[Mapping[str, Any]], options: ScheduleOptions | None = None
    ) -> list[JobHandle[Any]]:
        """Enqueue a registered job once per argument set, all in one transaction."""
        return await self.aenqueue_definition(self.registry.get(name), args, options)

    enqueue_many = Blocking(aenqueue_many)

    async def _store(
        self, jobs: Sequence[NewJob], *, connection: Any = None
    ) -> list[JobHandle[Any]]:
        if connection is not None and self.portal.runs_here():
            raise ConfigurationError(
                "connection= belongs to the async API: await job.adelay(..., connection=conn)"
            )
        if not jobs:
            return []
        storage = await self._storage()
        results = await storage.jobs.enqueue_many(jobs, connection=connection)
        return [
            JobHandle(result.job_id, job.job_type, self, created=result.created)
            for job, result in zip(jobs, results, strict=True)
        ]
