"""A job's way through the file: enqueued, claimed under a lease, renewed, finished."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import msgspec

from jobworker.clock import Clock
from jobworker.config import Settings
from jobworker.errors import ConfigurationError
from jobworker.models import ClaimedJob, Completion, JobEvent, NewJob
from jobworker.storage.database_clock import keep_synced
from jobworker.storage.ports import EnqueueResult, NoSubscription, Recorded, Subscription
from jobworker.storage.rows import claimed_jobs, read_each
from jobworker.storage.sqlite.attempts import complete, end_leases, end_unreadable, prepare
from jobworker.storage.sqlite.connection import Database, Session
from jobworker.storage.sqlite.values import VALUES, event_rows_of, job_row, json_list
from jobworker.storage.sqlite.writes import insert_job, settle_new_continuation

__all__ = ["SQLiteJobs"]


class SQLiteJobs:
    def __init__(self, db: Database, settings: Settings, clock: Clock) -> None:
        self._db = db
        self._settings = settings
        self._clock = clock
        self._kept = settings.kept_kinds()

    async def subscribe(
        self,
        on_enqueued: Callable[[str], None],
        on_cancel: Callable[[uuid.UUID], None] | None = None,
    ) -> Subscription:
        return NoSubscription()  # SQLite has no notifications; workers poll

    async def enqueue_many(
        self, jobs: Sequence[NewJob], *, connection: Any = None
    ) -> list[EnqueueResult]:
        if connection is not None:
            raise ConfigurationError("enqueueing on a caller's connection needs PostgreSQL")
        rows = [job_row(job) for job in jobs]
        if not any(row["idempotency_key"] or row["continues_job_id"] for row in rows):
            await self._db.write(lambda session: session.execute_many("enqueue", rows))
            return [EnqueueResult(job.id) for job in jobs]
        return await self._db.write(lambda session: [self._enqueue(session, row) for row in rows])

    def _enqueue(self, session: Session, row: dict[str, Any]) -> EnqueueResult:
        result = insert_job(session, row)
        if result.created and row["continues_job_id"]:
            now = self._clock.now().timestamp()
            settle_new_continuation(
                session, row["id"], row["continues_job_id"], now, self._settings.result_ttl
            )
        return result

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
        limits = {t: n for t, n in (concurrency or {}).items() if t in job_types}
        free = [t for t in job_types if t not in limits]
        queues_json = json_list(queues)

        def claim(session: Session) -> list[ClaimedJob]:
            now = self._clock.now().timestamp()
            params = {
                "owner": owner,
                "lease_until": now + lease_duration,
                "now": now,
                "queues": queues_json,
            }
            kinds = _KindRooms(sync_types, sync_limit, async_limit, limit)
            rows = kinds.take(session, params, free, limit)
            # Capped job types: count what runs and take no more than the rest, all within this
            # write transaction (SQLite has one writer at a time).
            for job_type in sorted(limits):
                room = limit - len(rows)
                if room <= 0:
                    break
                running = session.scalar("running_of_type", {"job_type": job_type})
                allowance = min(room, limits[job_type] - running)
                if allowance > 0:
                    rows += kinds.take(session, params, [job_type], allowance)
            claimed = claimed_jobs(rows, VALUES)
            default_ttl = self._settings.result_ttl
            end_unreadable(session, claimed.unreadable, now, default_ttl, "claim")
            return claimed.jobs

        return await self._db.write(claim)

    async def extend_leases(
        self, owner: str, held: Sequence[tuple[uuid.UUID, int]], lease_duration: float
    ) -> set[uuid.UUID]:
        if not held:
            return set()
        pairs = msgspec.json.encode([(str(job_id), attempt) for job_id, attempt in held]).decode()

        def extend(session: Session) -> set[uuid.UUID]:
            now = self._clock.now().timestamp()
            params = {
                "owner": owner,
                "held": pairs,
                "lease_until": now + lease_duration,
                "now": now,
            }
            return {uuid.UUID(row[0]) for row in session.all("extend_leases", params)}

        return await self._db.write(extend)

    async def cancel_requests(self, owner: str) -> list[uuid.UUID]:
        rows = await self._db.read(lambda session: session.all("cancel_requests", {"owner": owner}))
        return read_each(rows, lambda row: VALUES.to_uuid(row[0]))[0]  # claims read them whole

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
        default_ttl = self._settings.result_ttl
        event_rows = event_rows_of(events, emitted_by, self._kept)
        prepared = prepare(completions, default_ttl)  # outside the write lock

        def record(session: Session) -> Recorded:
            now = self._clock.now().timestamp()
            # Events first: a job's end is numbered after every event its attempt stored.
            if event_rows:
                session.execute_many("insert_event", event_rows)
            if not completions:
                return Recorded()
            applied, ended = complete(session, prepared, now, default_ttl, with_events=lifecycle)
            return Recorded(applied=applied, events=ended)

        return await self._db.write(record)

    async def release_owner(
        self,
        owner: str,
        *,
        lost: bool,
        reason: str,
        seq_floors: Mapping[uuid.UUID, int] | None = None,
    ) -> int:
        floors = {str(job_id): seq for job_id, seq in (seq_floors or {}).items()}
        return await self._db.write(
            lambda session: end_leases(
                session,
                "leases_of_owner",
                {"owner": owner},
                lost=lost,
                reason=reason,
                seq_floors=floors,
                now=self._clock.now().timestamp(),
                default_ttl=self._settings.result_ttl,
            )
        )


class _KindRooms:
    """What is left of a claim's limits per kind of handler (sync types and the others) as its
    groups of types (the free ones, then each capped type) take rows."""

    def __init__(
        self,
        sync_types: Collection[str],
        sync_limit: int | None,
        async_limit: int | None,
        limit: int,
    ) -> None:
        self._sync_types = frozenset(sync_types)
        self._sync = limit if sync_limit is None else sync_limit
        self._async = limit if async_limit is None else async_limit

    def take(
        self, session: Session, params: dict[str, Any], job_types: Sequence[str], room: int
    ) -> list[Any]:
        """Claim up to `room` of `job_types`, within what is left of each kind's limit, as the
        PostgreSQL claim does (sql/postgres/017_claim_kind_limits.sql says why so)."""
        sync_room, async_room = min(room, self._sync), min(room, self._async)
        sync = [t for t in job_types if t in self._sync_types]
        others = [t for t in job_types if t not in self._sync_types]
        if sync_room >= room and async_room >= room:
            rows = self._walk(session, params, job_types, room)
        elif sync_room <= 0 or not sync:
            rows = self._walk(session, params, others, async_room)
        elif async_room <= 0 or not others:
            rows = self._walk(session, params, sync, sync_room)
        else:
            kinds = {
                "job_types": json_list(job_types),
                "sync_types": json_list(sync),
                "sync_limit": sync_room,
                "async_limit": async_room,
                "limit": room,
            }
            rows = session.all("claim_kinds", {**params, **kinds})
            with contextlib.suppress(TypeError):  # a hostile row (rows.py) keeps the order
                rows.sort(key=lambda row: (-row[9], row[10]))  # most urgent first
            taken_sync = sum(1 for row in rows if row[1] in self._sync_types)
            sync_room -= taken_sync
            async_room -= len(rows) - taken_sync
            left = room - len(rows)
            # One kind's limit filled: the other kind's rows may lie behind its backlog.
            if left > 0 and sync_room <= 0 < async_room:
                rows += self._walk(session, params, others, min(left, async_room))
            elif left > 0 and async_room <= 0 < sync_room:
                rows += self._walk(session, params, sync, min(left, sync_room))
        taken_sync = sum(1 for row in rows if row[1] in self._sync_types)
        self._sync -= taken_sync
        self._async -= len(rows) - taken_sync
        return rows

    @staticmethod
    def _walk(
        session: Session, params: dict[str, Any], job_types: Sequence[str], limit: int
    ) -> list[Any]:
        if not job_types or limit <= 0:
            return []
        return session.all("claim", {**params, "job_types": json_list(job_types), "limit": limit})
