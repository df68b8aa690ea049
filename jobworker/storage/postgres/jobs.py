"""The jobs role on PostgreSQL: enqueue, claim, renew and finish.

Every batch is one round trip: enqueues and outcomes travel as arrays and are unnested in SQL.
Claims lock rows with `FOR UPDATE SKIP LOCKED`; idle workers wake on `LISTEN/NOTIFY`."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from jobworker.clock import Clock
from jobworker.config import Settings
from jobworker.errors import JobNotFoundError
from jobworker.models import ClaimedJob, Completion, JobEvent, JobStatus, NewJob, Succeeded
from jobworker.storage.attempt_ends import of_outcome
from jobworker.storage.database_clock import keep_synced
from jobworker.storage.event_log import Change, end_events
from jobworker.storage.ports import EnqueueResult, Recorded, Subscription
from jobworker.storage.postgres.connection import Database, plain_uuid
from jobworker.storage.postgres.endings import Endings
from jobworker.storage.postgres.listener import Listener
from jobworker.storage.rows import Values, claimed_jobs

logger = logging.getLogger("jobworker.storage.postgres")

_COPY_FROM = 64  # batches at least this large, without idempotency keys, are COPYed in
_COPY_COLUMNS = [
    "id",
    "job_type",
    "queue",
    "priority",
    "status",
    "args",
    "max_attempts",
    "enqueued_at",
    "run_at",
    "continues_job_id",
    "result_ttl",
    "kind",
    "trace_context",
]
# A claimed job's id stays asyncpg's UUID subclass (equal to, and hashed like, uuid.UUID): the
# claim is the hot path, and the id only goes back to the database.
_CLAIMED = Values()


class PostgresJobs:
    def __init__(self, db: Database, settings: Settings, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        self._result_ttl = settings.result_ttl
        self._kept = settings.kept_kinds()
        # Workers with Redis carry events live there: their rounds need no notification.
        self._notify_on_record = not settings.redis_url
        self._endings = Endings(db, settings, clock)

    async def enqueue_many(
        self, jobs: Sequence[NewJob], *, connection: Any = None
    ) -> list[EnqueueResult]:
        if not jobs:
            return []
        if any(job.continues_job_id for job in jobs):
            if connection is not None:
                return await self._insert_continuations(connection, jobs, text_json=True)
            async with self._db.acquire() as conn, conn.transaction():
                return await self._insert_continuations(conn, jobs, text_json=False)
        if connection is not None:
            return await insert_jobs(self._db, connection, jobs, text_json=True)
        if len(jobs) >= _COPY_FROM and not any(job.idempotency_key for job in jobs):
            return await self._copy(jobs)
        # One statement: atomic on its own, no BEGIN/COMMIT round trips.
        async with self._db.acquire() as conn:
            return await insert_jobs(self._db, conn, jobs, text_json=False)

    async def _insert_continuations(
        self, conn: Any, jobs: Sequence[NewJob], *, text_json: bool
    ) -> list[EnqueueResult]:
        """Continuations go in with their parents locked (in one transaction), and those whose
        parent has already ended are settled before it commits."""
        parents = sorted({job.continues_job_id for job in jobs if job.continues_job_id})
        found = {row[0]: row[1] for row in await self._db.fetch("lock_parents", parents, conn=conn)}
        missing = [parent for parent in parents if parent not in found]
        if missing:
            raise JobNotFoundError(missing[0])
        results = await insert_jobs(self._db, conn, jobs, text_json=text_json)
        ended = [parent for parent, status in found.items() if JobStatus(status).is_terminal]
        await self._endings.settle(ended, conn=conn, text_json=text_json)
        return results

    async def _copy(self, jobs: Sequence[NewJob]) -> list[EnqueueResult]:
        """Large batches without idempotency keys: binary COPY, the fastest way in."""
        records = [
            (
                job.id,
                job.job_type,
                job.queue,
                job.priority,
                job.status.value,
                job.args,
                job.max_attempts,
                job.enqueued_at,
                job.run_at,
                job.continues_job_id,
                job.result_ttl,
                job.kind.value,
                job.trace_context,
            )
            for job in jobs
        ]
        async with self._db.acquire() as conn:
            await conn.copy_records_to_table(
                "jobs", schema_name=self._db.schema, columns=_COPY_COLUMNS, records=records
            )
        return [EnqueueResult(job.id) for job in jobs]

    async def subscribe(
        self,
        on_enqueued: Callable[[str], None],
        on_cancel: Callable[[uuid.UUID], None] | None = None,
    ) -> Subscription:
        def dispatch(payload: str) -> None:
            if payload.startswith("cancel:"):
                if on_cancel is not None:
                    on_cancel(uuid.UUID(payload[7:]))
            else:
                on_enqueued(payload)

        # After a reconnect anything may have been enqueued meanwhile.
        listener = Listener(
            self._db.connect, self._db.jobs_channel, dispatch, lambda: on_enqueued("*")
        )
        await listener.start()
        return listener

    async def claim(
        self,
        owner: str,
        job_types: Sequence[str],
        queues: Sequence[str],
        limit: int,
        lease_duration: float,
        concurrency: Mapping[str, int] | None = None,
        *,
        trace_context: bool = False,
        sync_types: Collection[str] = (),
        sync_limit: int | None = None,
        async_limit: int | None = None,
    ) -> list[ClaimedJob]:
        await keep_synced(self._clock)
        if limit <= 0 or not job_types or not queues:
            return []
        now = self._clock.now()
        claim = {
            "now": now,
            "queues": list(queues),
            "limit": limit,
            "owner": owner,
            "lease_until": datetime.fromtimestamp(now.timestamp() + lease_duration, now.tzinfo),
            "sync_types": [t for t in job_types if t in sync_types],
            "sync_limit": sync_limit,
            "async_limit": async_limit,
        }
        caps = sorted((t, n) for t, n in (concurrency or {}).items() if t in job_types)
        capped = {t for t, _ in caps}
        free = [t for t in job_types if t not in capped]
        # Not repeated on a lost connection: the worker's claim loop retries on its own.
        # The trace context costs an index lookup per claimed row here: read only when asked.
        traced = "_traced" if trace_context else ""
        if caps:
            rows = await self._db.fetch(
                f"claim_capped{traced}",
                job_types=free,
                capped_types=[t for t, _ in caps],
                caps=[n for _, n in caps],
                retry=False,
                **claim,
            )
        else:
            rows = await self._db.fetch(f"claim{traced}", job_types=free, retry=False, **claim)
        claimed = claimed_jobs(rows, _CLAIMED)
        if claimed.unreadable:
            owners = {row.raw_id: owner for row in claimed.unreadable}
            await self._db.in_transaction(
                lambda conn: self._endings.end_unreadable(
                    claimed.unreadable, owners, now, conn, where="claim"
                )
            )
        return claimed.jobs

    async def extend_leases(
        self, owner: str, held: Sequence[tuple[uuid.UUID, int]], lease_duration: float
    ) -> set[uuid.UUID]:
        if not held:
            return set()
        now = self._clock.now()
        rows = await self._db.fetch(
            "extend_leases",
            owner=owner,
            ids=[job_id for job_id, _ in held],
            attempts=[attempt for _, attempt in held],
            lease_until=datetime.fromtimestamp(now.timestamp() + lease_duration, now.tzinfo),
        )
        return {plain_uuid(row[0]) for row in rows}

    async def cancel_requests(self, owner: str) -> list[uuid.UUID]:
        return [plain_uuid(row[0]) for row in await self._db.fetch("cancel_requests", owner)]

    async def complete_many(
        self,
        completions: Sequence[Completion],
        events: Sequence[JobEvent] = (),
        *,
        emitted_by: Sequence[tuple[str, int]] = (),
        lifecycle: bool = True,
    ) -> Recorded:
        if not completions and not events:
            return Recorded()
        # Each outcome the way decided for a job without a cancel request; those that find
        # nothing (a cancel was requested, or the lease is lost), the way decided for one with it.
        ttl, channel = self._result_ttl, self._db.events_channel if self._notify_on_record else None
        ends = self._endings.end_attempts
        plain = [of_outcome(item, ttl, cancel_requested=False) for item in completions]
        applied = await ends(plain, events, emitted_by, kept=self._kept, channel=channel)
        if len(applied) < len(completions):
            done = {row[0] for row in applied}
            asked = [
                of_outcome(item, ttl, cancel_requested=True)
                for item in completions
                if item.job_id not in done
            ]
            applied += await ends(asked, channel=channel)
        if len(applied) < len(completions):
            logger.info(
                "dropped %d outcome(s) whose lease was lost", len(completions) - len(applied)
            )
        if self._notify_on_record and events and not applied:
            # The statement notifies with its first applied outcome; without one, do it here.
            await self._db.notify_events(list({event.job_id for event in events}))
        await self._endings.settle([row[0] for row in applied if row[1]])
        if not lifecycle:
            return Recorded(applied=len(applied))
        return Recorded(applied=len(applied), events=_end_events(completions, applied))

    async def release_owner(
        self,
        owner: str,
        *,
        lost: bool,
        reason: str,
        seq_floors: Mapping[uuid.UUID, int] | None = None,
    ) -> int:
        return await self._endings.end_leases(
            owner, lost=lost, reason=reason, seq_floors=seq_floors, limit=100_000
        )


def _end_events(completions: Sequence[Completion], applied: Sequence[Any]) -> list[JobEvent]:
    """The events of each applied outcome's end (a success's result, then its lifecycle event),
    as the attempt row records them, at the attempt's end time."""
    by_id = {item.job_id: item for item in completions}
    events: list[JobEvent] = []
    for row in applied:
        job_id = plain_uuid(row[0])
        item = by_id[job_id]
        change = Change(job_id, row[4], JobStatus(row[2]), row[3], row[5], row[6])
        result = item.outcome.result if isinstance(item.outcome, Succeeded) else None
        events += end_events(change, item.ended_at, result=result)
    return events


async def insert_jobs(
    db: Database, conn: Any, jobs: Sequence[NewJob], *, text_json: bool
) -> list[EnqueueResult]:
    """Insert `jobs` on `conn` (the caller's transaction, or one statement on its own). A job
    whose idempotency key is already held is answered with the job holding it. `text_json`: the
    caller's own connection, which exchanges jsonb as text (ours exchange it as bytes)."""
    results: dict[uuid.UUID, EnqueueResult] = {}
    pending = list(jobs)
    while pending:
        rows = await db.fetch("enqueue", **_insert_params(pending, text_json), conn=conn)
        inserted = {row[0] for row in rows}
        taken = []
        for job in pending:
            if job.id in inserted:
                results[job.id] = EnqueueResult(job.id)
            else:
                taken.append(job)
        if not taken:
            break
        # Idempotency keys already held: answer with the jobs that hold them. A holder purged
        # between the two statements frees its key, and that job is inserted on the next turn.
        keys = [job.idempotency_key for job in taken]
        holders = dict(await db.fetch("ids_by_idempotency_keys", keys, conn=conn))
        pending = []
        for job in taken:
            holder = holders.get(job.idempotency_key)
            if holder is None:
                pending.append(job)
            else:
                results[job.id] = EnqueueResult(plain_uuid(holder), created=False)
    return [results[job.id] for job in jobs]


def _insert_params(jobs: Sequence[NewJob], text_json: bool) -> dict[str, Any]:
    args: list[Any] = [job.args.decode() for job in jobs] if text_json else [j.args for j in jobs]
    return {
        "ids": [job.id for job in jobs],
        "job_types": [job.job_type for job in jobs],
        "queues": [job.queue for job in jobs],
        "priorities": [job.priority for job in jobs],
        "statuses": [job.status.value for job in jobs],
        "job_args": args,
        "max_attempts": [job.max_attempts for job in jobs],
        "enqueued_ats": [job.enqueued_at for job in jobs],
        "run_ats": [job.run_at for job in jobs],
        "idempotency_keys": [job.idempotency_key for job in jobs],
        "continues_job_ids": [job.continues_job_id for job in jobs],
        "result_ttls": [job.result_ttl for job in jobs],
        "kinds": [job.kind.value for job in jobs],
        "trace_contexts": [job.trace_context for job in jobs],
    }
