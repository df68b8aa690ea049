"""PostgreSQL storage on an asyncpg pool.

Every batch is one round trip: enqueues and outcomes travel as arrays and are unnested in SQL.
Claims lock rows with `FOR UPDATE SKIP LOCKED`. Idle workers wake on `LISTEN/NOTIFY`. asyncpg
prepares and caches each statement per connection. The schema is the user's: `jobworker migrate`
applies it; a worker never migrates on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import msgspec

from jobworker.clock import Clock, system_clock
from jobworker.config import Settings
from jobworker.errors import (
    ConfigurationError,
    InvalidJobStateError,
    JobNotFoundError,
    MissingExtraError,
    SchemaMissingError,
)
from jobworker.models import (
    AttemptOutcome,
    AttemptRecord,
    CancelResult,
    ClaimedJob,
    Completion,
    EventKind,
    JobEvent,
    JobFilter,
    JobRecord,
    JobStatus,
    LeaseTerm,
    NewJob,
    QueueInfo,
)
from jobworker.recurring import BEAT_LEASE, BeatLeader, RecurringJob, RecurringSpec
from jobworker.storage.base import (
    FINISHED,
    SCHEMA_TOKEN,
    check_schema_name,
    job_record,
    lifecycle_event,
    outcome_row,
    without_derived_results,
)
from jobworker.storage.ports import EnqueueResult, LeaderLease, Recorded, Subscription
from jobworker.storage.sqlfiles import queries, schema_scripts

try:
    import asyncpg
except ImportError:  # pragma: no cover - exercised only without the extra
    asyncpg = None
    _CONNECTION_LOST: tuple[type[BaseException], ...] = ()
else:
    _CONNECTION_LOST = (
        OSError,
        asyncpg.InterfaceError,
        asyncpg.InternalClientError,
        asyncpg.PostgresConnectionError,
        asyncpg.CannotConnectNowError,
        asyncpg.AdminShutdownError,
    )

logger = logging.getLogger("jobworker.storage.postgres")

_MIGRATION_LOCK = 0x6A6F62776F726B  # "jobwork": one migration at a time per database
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
]


def quoted_schema(name: str) -> str:
    """The schema name as a quoted identifier, after checking it is a plain lower-case name."""
    check_schema_name(name)
    return f'"{name}"'


def render(sql: str, schema: str) -> str:
    return sql.replace(SCHEMA_TOKEN, quoted_schema(schema))


def rendered_scripts(schema: str) -> list[tuple[int, str, str]]:
    """The PostgreSQL schema scripts with the schema filled in (what `jobworker sql` prints)."""
    return [(v, name, render(text, schema)) for v, name, text in schema_scripts("postgres")]


async def _init_connection(conn: Any) -> None:
    # jsonb travels as raw JSON bytes (version byte + text): msgspec encodes and decodes it.
    await conn.set_type_codec(
        "jsonb",
        schema="pg_catalog",
        format="binary",
        encoder=lambda data: b"\x01" + data,
        decoder=lambda data: data[1:],
    )


async def _keep_session(conn: Any) -> None:
    """Pooled connections are returned as they are: jobworker never changes session state
    (no SET, LISTEN or advisory lock on a pooled connection; transactions always end), so the
    default reset query would be a wasted round trip on every release."""


class PostgresStorage:
    dialect = "postgres"

    def __init__(
        self, url: str, settings: Settings | None = None, clock: Clock = system_clock
    ) -> None:
        if asyncpg is None:
            raise MissingExtraError("asyncpg", "postgres")
        self.url = url
        self.settings = settings or Settings(database_url=url)
        self.clock = clock
        self.schema_name = self.settings.database_schema
        quoted_schema(self.schema_name)
        self.channel = f"jobworker:{self.schema_name}"
        self.events_channel = f"jobworker-events:{self.schema_name}"
        # Workers with Redis carry events live there: their rounds need no notification.
        self._notify_on_record = not self.settings.redis_url
        # When results are kept, read_events derives a succeeded job's `result` event.
        self.derives_result_events = "result" in self.settings.persisted_kinds()
        self._sql = {
            name: render(text, self.schema_name) for name, text in queries("postgres").items()
        }
        self._pool: Any = None

        # Every role is this object until the backend is split by role.
        self.schema = self.jobs = self.control = self.inspection = self.events = self
        self.maintenance = self.recurring = self.leadership = self

    # Connection ---------------------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            return
        # min_size=0: the pool keeps no floor of connections to restore, so an outage costs
        # failed queries (which their callers retry), not a stream of reconnect tracebacks.
        pool = asyncpg.create_pool(
            self.url,
            min_size=0,
            max_size=self.settings.pool_size,
            init=_init_connection,
            reset=_keep_session,
            timeout=self.settings.connect_timeout,
            command_timeout=None,
        )
        try:
            await pool
            async with pool.acquire() as conn:
                await conn.execute("SELECT 1")
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            await pool.close()
            raise ConfigurationError(
                f"cannot connect to PostgreSQL at {self._safe_url}: {exc}"
            ) from exc
        self._pool = pool

    @property
    def _safe_url(self) -> str:
        return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", self.url)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), 10)
            except (TimeoutError, OSError, asyncpg.InterfaceError):
                pool.terminate()

    async def _query(self, method: str, name: str, *args: Any, retry: bool = True) -> Any:
        """Run a named statement on a pooled connection. A connection that died under us (the
        server restarted, an admin terminated it) is retried once on a fresh one when the
        statement is safe to repeat."""
        for attempt in (1, 2):
            try:
                async with self.pool.acquire() as conn:
                    return await getattr(conn, method)(self._sql[name], *args)
            except _CONNECTION_LOST as exc:
                if not retry or attempt == 2:
                    raise
                logger.debug("a database connection was lost (%s); retrying on a fresh one", exc)
        raise AssertionError("unreachable")

    @property
    def pool(self) -> Any:
        if self._pool is None:
            raise RuntimeError("PostgresStorage used before open()")
        return self._pool

    async def migrate(self) -> list[int]:
        applied = []
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            current = await self._version(conn)
            for version, _name, text in rendered_scripts(self.schema_name):
                if version > current:
                    await conn.execute(text)
                    applied.append(version)
        return applied

    async def _version(self, conn: Any) -> int:
        table = f"{quoted_schema(self.schema_name)}.jobworker_schema"
        if await conn.fetchval("SELECT to_regclass($1)", table) is None:
            return 0
        return int(await conn.fetchval(self._sql["schema_version"]) or 0)

    async def check_schema(self) -> None:
        latest = max(version for version, _, _ in schema_scripts("postgres"))
        async with self.pool.acquire() as conn:
            current = await self._version(conn)
        if current < latest:
            state = "has no jobworker schema" if current == 0 else f"has schema version {current}"
            raise SchemaMissingError(
                f"the database {state} (schema {self.schema_name!r}; this version needs {latest}); "
                f"run: jobworker migrate --database-url ..."
            )

    # Notifications ------------------------------------------------------------------------

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
        listener = _Listener(self, self.channel, dispatch, lambda: on_enqueued("*"))
        await listener.start()
        return listener

    async def subscribe_events(
        self, on_events: Callable[[set[uuid.UUID] | None], None]
    ) -> Subscription:
        def dispatch(payload: str) -> None:
            on_events(None if payload == "*" else {uuid.UUID(id) for id in payload.split(",")})

        listener = _Listener(self, self.events_channel, dispatch, lambda: on_events(None))
        await listener.start()
        return listener

    # Enqueue ------------------------------------------------------------------------------

    async def enqueue_many(
        self, jobs: Sequence[NewJob], *, connection: Any = None
    ) -> list[EnqueueResult]:
        if not jobs:
            return []
        if any(job.continues_job_id for job in jobs):
            if connection is not None:
                return await self._insert_continuations(connection, jobs, text_json=True)
            async with self.pool.acquire() as conn, conn.transaction():
                return await self._insert_continuations(conn, jobs, text_json=False)
        if (
            connection is None
            and len(jobs) >= _COPY_FROM
            and not any(job.idempotency_key for job in jobs)
        ):
            return await self._copy(jobs)
        if connection is not None:
            return await self._insert(connection, jobs, text_json=True)
        # One statement: atomic on its own, no BEGIN/COMMIT round trips.
        async with self.pool.acquire() as conn:
            return await self._insert(conn, jobs, text_json=False)

    async def _insert_continuations(
        self, conn: Any, jobs: Sequence[NewJob], *, text_json: bool
    ) -> list[EnqueueResult]:
        """Continuations go in with their parents locked (in one transaction), and those whose
        parent has already ended are settled before it commits."""
        parents = sorted({job.continues_job_id for job in jobs if job.continues_job_id})
        found = {row[0]: row[1] for row in await conn.fetch(self._sql["lock_parents"], parents)}
        missing = [parent for parent in parents if parent not in found]
        if missing:
            raise JobNotFoundError(missing[0])
        results = await self._insert(conn, jobs, text_json=text_json)
        ended = [parent for parent, status in found.items() if status in FINISHED]
        if ended:
            await conn.fetchval(
                self._sql["settle_continuations"],
                ended,
                self.clock.now(),
                self.settings.result_ttl,
                self.channel,
            )
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
            )
            for job in jobs
        ]
        async with self.pool.acquire() as conn:
            await conn.copy_records_to_table(
                "jobs", schema_name=self.schema_name, columns=_COPY_COLUMNS, records=records
            )
        return [EnqueueResult(job.id) for job in jobs]

    async def _insert(
        self, conn: Any, jobs: Sequence[NewJob], *, text_json: bool
    ) -> list[EnqueueResult]:
        results: dict[uuid.UUID, EnqueueResult] = {}
        pending = list(jobs)
        while pending:
            rows = await conn.fetch(self._sql["enqueue"], *_insert_params(pending, text_json))
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
            holders = dict(await conn.fetch(self._sql["ids_by_idempotency_keys"], keys))
            pending = []
            for job in taken:
                holder = holders.get(job.idempotency_key)
                if holder is None:
                    pending.append(job)
                else:
                    results[job.id] = EnqueueResult(_uuid(holder), created=False)
        return [results[job.id] for job in jobs]

    # Claim and leases ---------------------------------------------------------------------

    async def claim(
        self,
        owner: str,
        job_types: Sequence[str],
        queues: Sequence[str],
        limit: int,
        lease_duration: float,
        concurrency: Mapping[str, int] | None = None,
    ) -> list[ClaimedJob]:
        if limit <= 0 or not job_types or not queues:
            return []
        now = self.clock.now()
        until = datetime.fromtimestamp(now.timestamp() + lease_duration, now.tzinfo)
        caps = sorted((t, n) for t, n in (concurrency or {}).items() if t in job_types)
        capped = {t for t, _ in caps}
        free = [t for t in job_types if t not in capped]
        # Not repeated on a lost connection: the worker's claim loop retries on its own.
        if caps:
            rows = await self._query(
                "fetch",
                "claim_capped",
                now,
                list(queues),
                free,
                limit,
                owner,
                until,
                [t for t, _ in caps],
                [n for _, n in caps],
                retry=False,
            )
        else:
            rows = await self._query(
                "fetch", "claim", now, list(queues), free, limit, owner, until, retry=False
            )
        rows.sort(key=lambda row: (-row[9], row[10]))
        return [
            ClaimedJob(
                id=row[0],  # asyncpg's UUID subclass: equal to, and hashed like, uuid.UUID
                job_type=row[1],
                queue=row[2],
                args=row[3],
                attempt=row[4],
                max_attempts=row[5],
                enqueued_at=row[6],
                started_at=row[7],
                result_ttl=row[8],
                event_seq=row[11],
            )
            for row in rows
        ]

    async def extend_leases(self, owner: str, lease_duration: float) -> int:
        now = self.clock.now()
        until = datetime.fromtimestamp(now.timestamp() + lease_duration, now.tzinfo)
        return _count(await self._query("execute", "extend_leases", owner, until))

    async def complete_many(
        self,
        completions: Sequence[Completion],
        events: Sequence[JobEvent] = (),
        transient: Sequence[JobEvent] = (),
        *,
        lifecycle: bool = True,
    ) -> Recorded:
        if not completions and not events and not transient:
            return Recorded()
        rows = [outcome_row(item, self.settings.result_ttl) for item in completions]
        # read_events derives a succeeded job's `result` event from jobs.result (a row less).
        events = without_derived_results(completions, events)
        stored = [*events, *transient]
        params = (
            [item.job_id for item in completions],
            [item.attempt for item in completions],
            [item.lease_owner for item in completions],
            [row.outcome.value for row in rows],
            [row.result for row in rows],
            [row.error for row in rows],
            [row.traceback for row in rows],
            [row.retry_at for row in rows],
            [row.result_ttl for row in rows],
            [item.started_at for item in completions],
            [item.ended_at for item in completions],
            self.clock.now(),
            [item.event_seq for item in completions],
            [event.job_id for event in stored],
            [event.seq for event in stored],
            [event.kind.value for event in stored],
            [event.occurred_at for event in stored],
            [bytes(event.payload) for event in stored],
            [False] * len(events) + [True] * len(transient),
            self.events_channel if self._notify_on_record else None,
            [item.start_seq for item in completions],
        )
        # Safe to repeat: a second run finds the leases already released and changes nothing.
        applied = await self._query("fetch", "complete", *params)
        if len(applied) < len(completions):
            lost = len(completions) - len(applied)
            logger.info("dropped %d outcome(s) whose lease was lost", lost)
        if self._notify_on_record and stored and not applied:
            # The statement notifies with its first applied outcome; without one, do it here.
            await self._notify_events(list({event.job_id for event in stored}))
        await self._settle([row[0] for row in applied if row[1]])
        if not lifecycle:
            return Recorded(applied=len(applied))
        # The end's event is read back from the attempt row, which has the attempt's end time.
        ended_at = {item.job_id: item.ended_at for item in completions}
        return Recorded(
            applied=len(applied),
            lifecycle=[
                lifecycle_event(
                    _uuid(row[0]),
                    row[4],
                    ended_at[_uuid(row[0])],
                    JobStatus(row[2]),
                    row[3],
                    row[5],
                    row[6] if row[2] == JobStatus.FAILED else None,
                )
                for row in applied
            ],
        )

    async def _settle(self, parents: Sequence[uuid.UUID]) -> int:
        """Promote or cancel the continuations of jobs that have just ended. A separate
        statement on purpose: it must see continuations committed while the parent's row was
        locked by the statement that ended it. If this process dies first, the maintenance
        sweep (`resolve_continuations`) settles them."""
        if not parents:
            return 0
        count, changed = await self._query(
            "fetchrow",
            "settle_continuations",
            list(parents),
            self.clock.now(),
            self.settings.result_ttl,
            self.channel,
        )
        await self._notify_events(changed or [])
        return int(count or 0)

    async def _notify_events(self, job_ids: Sequence[uuid.UUID]) -> None:
        """Wake readers without Redis (LISTENing on the events channel) for these jobs."""
        if not job_ids:
            return
        payload = ",".join(str(job_id) for job_id in job_ids)
        await self._query(
            "execute", "notify_events", self.events_channel, payload if len(payload) < 7000 else "*"
        )

    async def leased_job_ids(self, owner: str | None, limit: int = 500) -> list[uuid.UUID]:
        rows = await self._query("fetch", "leased_job_ids", owner, self.clock.now(), limit)
        return [_uuid(row[0]) for row in rows]

    async def release_owner(
        self,
        owner: str,
        *,
        lost: bool,
        reason: str,
        seq_floors: Mapping[uuid.UUID, int] | None = None,
    ) -> int:
        return await self._end_leases(owner, lost, reason, seq_floors, limit=100_000)

    async def rescue_expired(
        self, limit: int = 500, seq_floors: Mapping[uuid.UUID, int] | None = None
    ) -> int:
        return await self._end_leases(None, True, "lease expired", seq_floors, limit=limit)

    async def _end_leases(
        self,
        owner: str | None,
        lost: bool,
        reason: str,
        seq_floors: Mapping[uuid.UUID, int] | None,
        *,
        limit: int,
    ) -> int:
        floors = dict(seq_floors or {})
        ended = await self._query(
            "fetch",
            "end_leases",
            owner,
            self.clock.now(),
            lost,
            reason,
            limit,
            self.settings.result_ttl,
            list(floors),
            list(floors.values()),
        )
        await self._notify_events([row[0] for row in ended])
        await self._settle([row[0] for row in ended if row[1]])
        return len(ended)

    # Cancellation and manual operations ---------------------------------------------------

    async def cancel(self, job_id: uuid.UUID, reason: str) -> CancelResult:
        row = await self._query(
            "fetchrow",
            "cancel",
            job_id,
            reason,
            self.clock.now(),
            self.settings.result_ttl,
            self.channel,
            retry=False,
        )
        if row is None:
            raise JobNotFoundError(job_id)
        if row[1]:
            await self._notify_events([job_id])
            await self._settle([job_id])
            return CancelResult.CANCELLED
        return CancelResult.REQUESTED if row[2] else CancelResult.FINISHED

    async def cancel_requests(self, owner: str) -> list[uuid.UUID]:
        return [_uuid(row[0]) for row in await self._query("fetch", "cancel_requests", owner)]

    async def retry_job(self, job_id: uuid.UUID) -> None:
        row = await self._query(
            "fetchrow", "retry_dead", job_id, self.clock.now(), self.channel, retry=False
        )
        if row is None:
            raise JobNotFoundError(job_id)
        if not row[1]:
            raise InvalidJobStateError(job_id, row[0], "only dead jobs can be retried")
        await self._notify_events([job_id])

    async def delete_job(self, job_id: uuid.UUID) -> None:
        row = await self._query("fetchrow", "delete_job", job_id)
        if row is None:
            raise JobNotFoundError(job_id)
        if not row[1]:
            raise InvalidJobStateError(job_id, row[0], "cancel it first")
        await self._settle([job_id])  # its continuations: "parent job ... no longer exists"

    async def resolve_continuations(self, limit: int = 500) -> int:
        parents = [row[0] for row in await self._query("fetch", "orphaned_parents", limit)]
        return await self._settle(parents)

    # Events -------------------------------------------------------------------------------

    async def read_events(
        self, job_id: uuid.UUID, after_seq: int = 0, limit: int = 100, *, transient: bool = False
    ) -> list[JobEvent]:
        rows = await self._query(
            "fetch", "read_events", job_id, after_seq, limit, transient, self.derives_result_events
        )
        return [
            JobEvent(
                job_id=job_id,
                seq=row[0],
                kind=EventKind(row[1]),
                occurred_at=row[2],
                payload=msgspec.Raw(row[3]),
            )
            for row in rows
        ]

    async def purge_transient_events(self, before: datetime, limit: int = 5000) -> int:
        return _count(await self._query("execute", "purge_transient_events", before, limit))

    # Leadership ---------------------------------------------------------------------------

    def leader_lease(self, name: str, holder: str, ttl: float) -> LeaderLease:
        return _AdvisoryLease(self, name, holder)

    # Queues -------------------------------------------------------------------------------

    async def set_queue_paused(self, queue: str, paused: bool) -> None:
        await self._query("execute", "set_queue_paused", queue, paused, self.clock.now())

    async def paused_queues(self) -> set[str]:
        return {row[0] for row in await self._query("fetch", "paused_queues")}

    async def queues(self) -> list[QueueInfo]:
        counts: dict[str, dict[str, int]] = {}
        for queue, status, n in await self._query("fetch", "queue_counts"):
            counts.setdefault(queue, {})[status] = n
        paused = {row[0]: row[1] for row in await self._query("fetch", "queue_states")}
        return [
            QueueInfo(name=name, paused=paused.get(name, False), counts=counts.get(name, {}))
            for name in sorted(set(counts) | set(paused))
        ]

    # Reading ------------------------------------------------------------------------------

    async def get(self, job_id: uuid.UUID) -> JobRecord | None:
        row = await self._query("fetchrow", "get_job", job_id)
        return None if row is None else _record(row)

    async def list_jobs(
        self, filter: JobFilter, *, limit: int = 50, offset: int = 0
    ) -> list[JobRecord]:
        rows = await self._query(
            "fetch",
            "list_jobs",
            filter.status.value if filter.status else None,
            filter.job_type,
            filter.queue,
            filter.idempotency_key,
            limit,
            offset,
        )
        return [_record(row) for row in rows]

    async def count_by_status(self) -> dict[JobStatus, int]:
        counts = dict.fromkeys(JobStatus, 0)
        for status, n in await self._query("fetch", "count_by_status"):
            counts[JobStatus(status)] = n
        return counts

    async def attempts(self, job_id: uuid.UUID) -> list[AttemptRecord]:
        rows = await self._query("fetch", "list_attempts", job_id)
        return [
            AttemptRecord(
                job_id=_uuid(row[0]),
                attempt=row[1],
                worker=row[2],
                started_at=row[3],
                ended_at=row[4],
                outcome=AttemptOutcome(row[5]),
                error=row[6],
                traceback=row[7],
            )
            for row in rows
        ]

    async def purge_expired(self, limit: int = 500) -> int:
        return _count(await self._query("execute", "purge_expired", self.clock.now(), limit))

    # Beat: recurring definitions and the leader's heartbeat -------------------------------

    async def upsert_recurring(self, specs: Sequence[RecurringSpec]) -> None:
        if not specs:
            return
        await self._query(
            "execute",
            "upsert_recurring",
            [spec.name for spec in specs],
            [spec.job_type for spec in specs],
            [spec.cron for spec in specs],
            [spec.timezone for spec in specs],
            [spec.args for spec in specs],
            self.clock.now(),
        )

    async def list_recurring(self) -> list[RecurringJob]:
        return [
            RecurringJob(
                name=row[0],
                job_type=row[1],
                cron=row[2],
                timezone=row[3],
                args=row[4],
                enabled=row[5],
                last_fire_at=row[6],
                next_fire_at=row[7],
                updated_at=row[8],
            )
            for row in await self._query("fetch", "list_recurring")
        ]

    async def set_recurring_enabled(self, name: str, enabled: bool) -> bool:
        status = await self._query(
            "execute", "set_recurring_enabled", name, enabled, self.clock.now()
        )
        return _count(status) == 1

    async def fire_recurring(
        self, name: str, instant: datetime, next_fire_at: datetime, job: NewJob
    ) -> EnqueueResult | None:
        async with self.pool.acquire() as conn, conn.transaction():
            status = await conn.execute(self._sql["fire_recurring"], name, instant, next_fire_at)
            if _count(status) != 1:
                return None
            (result,) = await self._insert(conn, [job], text_json=False)
            return result

    async def advance_recurring(self, name: str, next_fire_at: datetime) -> None:
        await self._query("execute", "advance_recurring", name, next_fire_at)

    async def record_beat_leader(self, name: str, term: LeaseTerm, expires_at: datetime) -> None:
        await self._query(
            "execute",
            "record_beat_leader",
            name,
            term.holder,
            term.mechanism,
            term.token,
            term.since,
            self.clock.now(),
            expires_at,
        )

    async def clear_beat_leader(self, name: str, token: str) -> None:
        await self._query("execute", "clear_beat_leader", name, token)

    async def beat_leader(self, name: str = BEAT_LEASE) -> BeatLeader | None:
        row = await self._query("fetchrow", "beat_leader", name, self.clock.now())
        if row is None:
            return None
        return BeatLeader(
            holder=row[0],
            mechanism=row[1],
            token=row[2],
            since=row[3],
            renewed_at=row[4],
            expires_at=row[5],
        )


class _AdvisoryLease:
    """`pg_try_advisory_lock` on a dedicated, unpooled connection: held as long as that session
    lives, released by the server the moment it ends (a dead leader needs no TTL to pass)."""

    mechanism = "postgres-advisory-lock"

    def __init__(self, storage: PostgresStorage, name: str, holder: str) -> None:
        self._storage = storage
        self._name = name
        self._holder = holder
        self._lock_key = f"{storage.schema_name}:leader:{name}"
        self._conn: Any = None
        self.term: LeaseTerm | None = None

    async def acquire(self) -> bool:
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(
                self._storage.url, timeout=self._storage.settings.connect_timeout
            )
        sql = self._storage._sql
        if not await self._conn.fetchval(sql["lease_try_lock"], self._lock_key):
            return False
        term = LeaseTerm(
            holder=self._holder,
            since=self._storage.clock.now(),
            mechanism=self.mechanism,
            token=uuid.uuid4().hex,
        )
        await self._conn.execute(
            sql["lease_record_term"], self._name, term.holder, term.token, term.since
        )
        self.term = term
        return True

    async def renew(self) -> bool:
        """The lock lives with the session: the lease holds while the connection answers."""
        if self.term is None or self._conn is None:
            return False
        try:
            await asyncio.wait_for(self._conn.fetchval("SELECT 1"), 5)
        except Exception:
            self.term = None
            with contextlib.suppress(Exception):
                self._conn.terminate()
            self._conn = None
            return False
        return True

    async def release(self) -> None:
        if self.term is not None and self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.fetchval(self._storage._sql["lease_unlock"], self._lock_key)
        self.term = None

    async def current(self) -> LeaseTerm | None:
        row = await self._storage._query("fetchrow", "lease_current", self._name, self._lock_key)
        if row is None:
            return None
        return LeaseTerm(holder=row[0], token=row[1], since=row[2], mechanism=self.mechanism)

    async def close(self) -> None:
        await self.release()
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 5)


class _Listener:
    """A dedicated connection LISTENing on one channel; reconnects on its own when it drops
    (and calls `on_reconnect`: notifications sent meanwhile are lost)."""

    def __init__(
        self,
        storage: PostgresStorage,
        channel: str,
        on_payload: Callable[[str], None],
        on_reconnect: Callable[[], None],
    ) -> None:
        self._storage = storage
        self._channel = channel
        self._on_payload = on_payload
        self._on_reconnect = on_reconnect
        self._conn: Any = None
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        try:
            await self._connect()
        except Exception as exc:
            logger.warning("LISTEN connection failed (%s); polling until it is back", exc)
            self._lost.set()
        self._task = asyncio.create_task(self._keep_alive(), name="jobworker-listen")

    async def _connect(self) -> None:
        conn = await asyncpg.connect(
            self._storage.url, timeout=self._storage.settings.connect_timeout
        )
        await conn.add_listener(self._channel, self._notified)
        conn.add_termination_listener(lambda _conn: self._lost.set())
        self._conn = conn
        self._lost.clear()

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self._on_payload(payload)

    async def _keep_alive(self) -> None:
        while True:
            await self._lost.wait()
            began = time.monotonic()
            logger.warning("the LISTEN connection to PostgreSQL was lost; reconnecting")
            delay = 0.2
            while True:
                with contextlib.suppress(Exception):
                    if self._conn is not None:
                        self._conn.terminate()
                try:
                    await self._connect()
                except Exception as exc:
                    logger.debug("LISTEN reconnect failed: %s", exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                logger.warning(
                    "the LISTEN connection is back after %.1fs", time.monotonic() - began
                )
                self._on_reconnect()
                break

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 5)


def _insert_params(jobs: Sequence[NewJob], text_json: bool) -> tuple[list[Any], ...]:
    # Our own connections exchange jsonb as bytes; a caller's connection, as text.
    args: list[Any] = [job.args.decode() for job in jobs] if text_json else [j.args for j in jobs]
    return (
        [job.id for job in jobs],
        [job.job_type for job in jobs],
        [job.queue for job in jobs],
        [job.priority for job in jobs],
        [job.status.value for job in jobs],
        args,
        [job.max_attempts for job in jobs],
        [job.enqueued_at for job in jobs],
        [job.run_at for job in jobs],
        [job.idempotency_key for job in jobs],
        [job.continues_job_id for job in jobs],
        [job.result_ttl for job in jobs],
    )


def _count(status: str) -> int:
    """Rows affected, from a command tag such as 'UPDATE 3' or 'INSERT 0 3'."""
    try:
        return int(status.rsplit(" ", 1)[-1])
    except (ValueError, AttributeError):
        return 0


def _uuid(value: Any) -> uuid.UUID:
    """asyncpg returns its own uuid.UUID subclass; callers get plain UUIDs."""
    return value if type(value) is uuid.UUID else uuid.UUID(bytes=value.bytes)


def _record(row: Any) -> JobRecord:
    # asyncpg already returns aware datetimes and (with our codec) jsonb as bytes.
    return job_record(row, to_uuid=_uuid, to_time=_same, to_bytes=_same)


def _same(value: Any) -> Any:
    return value
