"""The jobs role: a job's way through the database (enqueued, claimed under a lease, renewed,
finished: `attempts` writes the ends of attempts and of leases)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import timedelta
from typing import Any

from jobworker.clock import Clock
from jobworker.errors import ConfigurationError, JobNotFoundError
from jobworker.models import ClaimedJob, Completion, JobEvent, NewJob
from jobworker.storage.database_clock import keep_synced
from jobworker.storage.ports import EnqueueResult, NoSubscription, Recorded, Subscription
from jobworker.storage.rows import claimed_jobs, report
from jobworker.storage.sqlserver.attempts import AttemptEnds
from jobworker.storage.sqlserver.connection import Session
from jobworker.storage.sqlserver.queries import Queries
from jobworker.storage.sqlserver.values import VALUES, job_fields, json, to_uuid, ts
from jobworker.storage.sqlserver.writes import EventWriter

__all__ = ["SQLServerJobs"]

_KEY_RACE_RETRIES = 3
_RELEASE_ALL = 100_000


class SQLServerJobs:
    def __init__(
        self,
        queries: Queries,
        writer: EventWriter,
        clock: Clock,
        result_ttl: float,
        schema_name: str,
    ) -> None:
        self._queries = queries
        self._writer = writer
        self._clock = clock
        self._result_ttl = result_ttl
        self._cap_lock_prefix = f"jobworker.cap.{schema_name}."
        self._ends = AttemptEnds(writer, queries, clock, result_ttl)

    async def subscribe(
        self,
        on_enqueued: Callable[[str], None],
        on_cancel: Callable[[uuid.UUID], None] | None = None,
    ) -> Subscription:
        return NoSubscription()  # no notifications on SQL Server: workers poll

    async def enqueue_many(
        self, jobs: Sequence[NewJob], *, connection: Any = None
    ) -> list[EnqueueResult]:
        if connection is not None:
            raise ConfigurationError("enqueueing on a caller's connection needs PostgreSQL")
        if not jobs:
            return []
        payload = json([job_fields(job) for job in jobs])

        def insert(session: Session) -> list[EnqueueResult]:
            return _enqueue_results(jobs, self._enqueue_rows(session, payload))

        return await self._queries.run(insert, retry=False)

    def _enqueue_rows(self, session: Session, payload: str) -> list[Any]:
        """The enqueue statement, with the events of the continuations it settles (their parent
        has already ended); a key taken by a concurrent enqueue between the check and the insert
        (the unique index objects) is answered on the next turn with its holder."""
        for turn in range(1, _KEY_RACE_RETRIES + 1):
            try:
                return self._writer.fetch_changing(
                    session,
                    "enqueue",
                    self._clock.now(),
                    jobs=payload,
                    default_ttl=self._result_ttl,
                )
            except self._queries.database.IntegrityError as exc:
                if "jobs_idempotency_key" not in str(exc) or turn == _KEY_RACE_RETRIES:
                    raise
                session.end_failed_transaction()
        raise AssertionError("unreachable")

    async def claim(
        self,
        owner: str,
        job_types: Sequence[str],
        queues: Sequence[str],
        limit: int,
        lease_duration: float,
        concurrency: Mapping[str, int] | None = None,
        *,
        trace_context: bool = False,  # read with the claim's own statement: free here
        sync_types: Collection[str] = (),
        sync_limit: int | None = None,
        async_limit: int | None = None,
    ) -> list[ClaimedJob]:
        await keep_synced(self._clock)
        if limit <= 0 or not job_types or not queues:
            return []
        caps = sorted((t, n) for t, n in (concurrency or {}).items() if t in job_types)
        capped = {t for t, _ in caps}
        now = self._clock.now()
        # Not repeated on a lost connection: the worker's claim loop retries on its own.
        rows = await self._queries.rows(
            "claim",
            retry=False,
            now=ts(now),
            queues=json(list(queues)),
            job_types=json([t for t in job_types if t not in capped]),
            limit=limit,
            owner=owner,
            lease_until=ts(now + timedelta(seconds=lease_duration)),
            caps=json([{"job_type": t, "cap": n} for t, n in caps]),
            lock_prefix=self._cap_lock_prefix,
            sync_types=json([t for t in job_types if t in sync_types]),
            sync_limit=limit if sync_limit is None else sync_limit,  # no NULL parameters
            async_limit=limit if async_limit is None else async_limit,
        )
        # The server's column types leave little unreadable; such a row is reported and left to
        # the lease rescue.
        claimed = claimed_jobs(rows, VALUES)
        report(claimed.unreadable, "claim")
        return claimed.jobs

    async def extend_leases(
        self, owner: str, held: Sequence[tuple[uuid.UUID, int]], lease_duration: float
    ) -> set[uuid.UUID]:
        if not held:
            return set()
        until = ts(self._clock.now() + timedelta(seconds=lease_duration))
        pairs = json([[str(job_id), attempt] for job_id, attempt in held])
        rows = await self._queries.rows("extend_leases", owner=owner, held=pairs, lease_until=until)
        return {to_uuid(row[0]) for row in rows}

    async def cancel_requests(self, owner: str) -> list[uuid.UUID]:
        rows = await self._queries.rows("cancel_requests", owner=owner)
        return [to_uuid(row[0]) for row in rows]

    async def complete_many(
        self,
        completions: Sequence[Completion],
        events: Sequence[JobEvent] = (),
        *,
        emitted_by: Sequence[tuple[str, int]] = (),
        lifecycle: bool = True,
    ) -> Recorded:
        if not completions:
            if events:  # a worker's events while its job runs
                await self._queries.run(
                    lambda session: self._writer.store(session, events, emitted_by)
                )
            return Recorded()
        return await self._ends.complete(completions, events, emitted_by, lifecycle=lifecycle)

    async def release_owner(
        self,
        owner: str,
        *,
        lost: bool,
        reason: str,
        seq_floors: Mapping[uuid.UUID, int] | None = None,
    ) -> int:
        return await self._ends.end_leases(
            expired=False,
            owner=owner,
            lost=lost,
            reason=reason,
            limit=_RELEASE_ALL,
            seq_floors=seq_floors,
        )


def _enqueue_results(jobs: Sequence[NewJob], rows: list[Any]) -> list[EnqueueResult]:
    """The enqueue statement's answer, one row per job: (ord, created, id, missing parent)."""
    missing = [row[3] for row in rows if row[3] is not None]
    if missing:  # nothing was stored
        raise JobNotFoundError(to_uuid(missing[0]))
    if len(rows) != len(jobs):
        raise RuntimeError(f"enqueue answered {len(rows)} rows for {len(jobs)} jobs")
    results = []
    for job, row in zip(jobs, rows, strict=True):
        created, job_id = row[1], row[2]
        if created:
            results.append(EnqueueResult(job.id))
        elif job_id is None:
            raise RuntimeError(f"job {job.id} was neither stored nor collapsed")
        else:
            results.append(EnqueueResult(to_uuid(job_id), created=False))
    return results
