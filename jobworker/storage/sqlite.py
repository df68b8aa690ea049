"""Embedded SQLite storage: stdlib sqlite3, WAL, a busy timeout and `BEGIN IMMEDIATE` writes.

One connection per process, used from one dedicated thread so the event loop never blocks on the
database lock. Several processes share the file; SQLite serialises their writes.
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from jobworker.clock import Clock, system_clock
from jobworker.config import Settings
from jobworker.errors import (
    ConfigurationError,
    InvalidJobStateError,
    JobNotFoundError,
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
    job_record,
    lifecycle_event,
    outcome_row,
    parent_ended_reason,
    without_derived_results,
)
from jobworker.storage.ports import (
    EnqueueResult,
    LeaderLease,
    NoSubscription,
    Recorded,
    Subscription,
)
from jobworker.storage.sqlfiles import queries, schema_scripts

T = TypeVar("T")
logger = logging.getLogger("jobworker.storage.sqlite")

# The newest schema script's version: the embedded backend upgrades itself to it on open.
SCHEMA_VERSION = max(version for version, _name, _text in schema_scripts("sqlite"))
_LOCK_RETRIES = 20


@contextmanager
def _file_lock(path: str) -> Iterator[None]:
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def sqlite_path(url: str) -> str:
    """`sqlite:///relative.db` or `sqlite:////absolute.db`."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise ConfigurationError(
            f"bad SQLite URL {url!r}: expected sqlite:///relative/path.db or sqlite:////abs/path.db"
        )
    path = url[len(prefix) :].split("?", 1)[0]
    if not path:
        raise ConfigurationError(f"bad SQLite URL {url!r}: no file name")
    if path == ":memory:" or path.startswith("file::memory:"):
        raise ConfigurationError(
            "an in-memory SQLite database cannot be shared by workers and clients; use a file"
        )
    return path


def _dt_required(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


class SQLiteStorage:
    dialect = "sqlite"

    def __init__(
        self, url: str, settings: Settings | None = None, clock: Clock = system_clock
    ) -> None:
        self.url = url
        self.path = sqlite_path(url)
        self.settings = settings or Settings()
        self.clock = clock
        self._sql = queries("sqlite")
        # When results are kept, read_events derives a succeeded job's `result` event.
        self.derives_result_events = "result" in self.settings.persisted_kinds()
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._pid = os.getpid()
        self._open_lock = threading.Lock()

        # Every role is this object until the backend is split by role.
        self.schema = self.jobs = self.control = self.inspection = self.events = self
        self.maintenance = self.recurring = self.leadership = self

    # Connection ---------------------------------------------------------------------------

    async def open(self) -> None:
        await self._run(lambda conn: None)

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        conn, self._conn = self._conn, None
        if executor is not None and conn is not None and self._pid == os.getpid():
            await asyncio.get_running_loop().run_in_executor(executor, conn.close)
        if executor is not None:
            executor.shutdown(wait=False)

    def _connect(self) -> sqlite3.Connection:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path,
            timeout=self.settings.sqlite_busy_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self.settings.sqlite_busy_timeout * 1000)}")
        self._with_lock_retry(lambda: conn.execute("PRAGMA journal_mode = WAL"))
        conn.execute(f"PRAGMA synchronous = {self.settings.sqlite_synchronous.upper()}")
        self._migrate(conn)
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> list[int]:
        """The embedded backend creates and upgrades its own schema on first use."""
        applied: list[int] = []
        if self._current_version(conn) >= SCHEMA_VERSION:
            return applied
        # Scripts that alter tables cannot run twice: processes starting together take turns,
        # and each reads the version again once it holds the lock.
        with _file_lock(self.path + ".migrate.lock"):
            current = self._current_version(conn)
            for version, _name, text in schema_scripts("sqlite"):
                if version <= current:
                    continue
                self._with_lock_retry(functools.partial(conn.executescript, text))
                applied.append(version)
        return applied

    @staticmethod
    def _current_version(conn: sqlite3.Connection) -> int:
        try:
            row = conn.execute("SELECT MAX(version) FROM jobworker_schema").fetchone()
        except sqlite3.OperationalError:
            return 0
        return int(row[0] or 0)

    async def migrate(self) -> list[int]:
        return await self._run(self._migrate)

    async def check_schema(self) -> None:
        version = await self._run(self._current_version)
        if version < SCHEMA_VERSION:
            raise SchemaMissingError(f"SQLite database {self.path} has schema version {version}")

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._pid != os.getpid():
            raise RuntimeError("a storage opened before fork() cannot be used in the child")
        if self._executor is None:
            with self._open_lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(1, thread_name_prefix="jobworker-sqlite")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, fn)

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            self._conn = self._connect()
        return fn(self._conn)

    @contextmanager
    def _write(self, conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        """A write transaction; `BEGIN IMMEDIATE` takes the write lock up front (no upgrade
        deadlocks), and a lock held past the busy timeout is retried rather than raised."""
        self._with_lock_retry(lambda: conn.execute("BEGIN IMMEDIATE"))
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            self._with_lock_retry(lambda: conn.execute("COMMIT"))

    @contextmanager
    def _snapshot(self, conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        """A read transaction: the statements inside see the database as of the first one, even
        while other processes write (each statement outside one sees its own moment)."""
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    @staticmethod
    def _with_lock_retry(action: Callable[[], T]) -> T:
        for attempt in range(_LOCK_RETRIES):
            try:
                return action()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if attempt == _LOCK_RETRIES - 1:
                    raise
                logger.warning("database is locked; retrying (%d)", attempt + 1)
                time.sleep(min(0.05 * 2**attempt, 1.0))
        raise AssertionError("unreachable")

    # Enqueue ------------------------------------------------------------------------------

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
        rows = [_job_row(job) for job in jobs]

        def insert(conn: sqlite3.Connection) -> list[EnqueueResult]:
            with self._write(conn):
                if not any(row["idempotency_key"] or row["continues_job_id"] for row in rows):
                    conn.executemany(self._sql["enqueue"], rows)
                    return [EnqueueResult(job.id) for job in jobs]
                results = []
                for row in rows:
                    # The unique index decides; a job already holding the key wins.
                    if conn.execute(self._sql["enqueue"], row).rowcount != 1:
                        existing = conn.execute(self._sql["id_by_idempotency_key"], row).fetchone()
                        results.append(EnqueueResult(uuid.UUID(existing[0]), created=False))
                        continue
                    results.append(EnqueueResult(uuid.UUID(str(row["id"]))))
                    if row["continues_job_id"]:
                        self._settle_continuation(
                            conn, str(row["id"]), str(row["continues_job_id"])
                        )
                return results

        return await self._run(insert)

    def _settle_continuation(self, conn: sqlite3.Connection, child: str, parent: str) -> None:
        """A continuation enqueued after its parent ended is settled at once (in the same
        transaction, so a parent that ends meanwhile cannot be missed)."""
        found = conn.execute(self._sql["job_status"], {"id": parent}).fetchone()
        if found is None:
            raise JobNotFoundError(uuid.UUID(parent))
        self._settle_awaiting(conn, child, JobStatus(found[0]), parent)

    def _settle_awaiting(
        self, conn: sqlite3.Connection, child: str, parent_status: JobStatus | None, parent: str
    ) -> None:
        params = {"id": child, "now": self.clock.now().timestamp()}
        if parent_status is JobStatus.SUCCEEDED:
            conn.execute(self._sql["promote_one_continuation"], params)
        elif parent_status is None or parent_status in (JobStatus.DEAD, JobStatus.CANCELLED):
            reason = parent_ended_reason(parent, parent_status)
            params.update(reason=reason, default_ttl=self.settings.result_ttl)
            conn.execute(self._sql["cancel_one_continuation"], params)
            conn.execute(self._sql["cancel_continuations"], params)

    def _after_parent_ended(
        self, conn: sqlite3.Connection, job_id: str, status: JobStatus, now: float
    ) -> None:
        if status is JobStatus.SUCCEEDED:
            conn.execute(self._sql["promote_continuations"], {"id": job_id, "now": now})
        elif status in (JobStatus.DEAD, JobStatus.CANCELLED):
            conn.execute(
                self._sql["cancel_continuations"],
                {
                    "id": job_id,
                    "now": now,
                    "reason": parent_ended_reason(job_id, status),
                    "default_ttl": self.settings.result_ttl,
                },
            )

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
        limits = {t: n for t, n in (concurrency or {}).items() if t in job_types}
        free_json = _json_list([t for t in job_types if t not in limits])
        queues_json = _json_list(queues)

        def claim(conn: sqlite3.Connection) -> list[ClaimedJob]:
            now = self.clock.now().timestamp()
            params = {
                "owner": owner,
                "lease_until": now + lease_duration,
                "now": now,
                "queues": queues_json,
                "job_types": free_json,
                "limit": limit,
            }
            with self._write(conn):
                rows = conn.execute(self._sql["claim"], params).fetchall()
                # Capped job types: count what runs and take no more than the rest, all within
                # this write transaction (SQLite has one writer at a time).
                for job_type in sorted(limits):
                    room = limit - len(rows)
                    if room <= 0:
                        break
                    running = conn.execute(
                        self._sql["running_of_type"], {"job_type": job_type}
                    ).fetchone()[0]
                    allowance = min(room, limits[job_type] - running)
                    if allowance > 0:
                        capped = {**params, "job_types": _json_list([job_type]), "limit": allowance}
                        rows += conn.execute(self._sql["claim"], capped).fetchall()
            rows.sort(key=lambda row: (-row[9], row[10]))
            return [
                ClaimedJob(
                    id=uuid.UUID(row[0]),
                    job_type=row[1],
                    queue=row[2],
                    args=row[3],
                    attempt=row[4],
                    max_attempts=row[5],
                    enqueued_at=_dt_required(row[6]),
                    started_at=_dt_required(row[7]),
                    result_ttl=row[8],
                    event_seq=row[11],
                )
                for row in rows
            ]

        return await self._run(claim)

    async def extend_leases(self, owner: str, lease_duration: float) -> int:
        def extend(conn: sqlite3.Connection) -> int:
            now = self.clock.now().timestamp()
            with self._write(conn):
                cursor = conn.execute(
                    self._sql["extend_leases"],
                    {"owner": owner, "lease_until": now + lease_duration, "now": now},
                )
            return cursor.rowcount

        return await self._run(extend)

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
        default_ttl = self.settings.result_ttl
        # read_events derives a succeeded job's `result` event from its result (a row less).
        event_rows = [
            _event_row(event, False) for event in without_derived_results(completions, events)
        ]
        event_rows += [_event_row(event, True) for event in transient]

        def complete(conn: sqlite3.Connection) -> Recorded:
            now = self.clock.now().timestamp()
            changes: list[JobEvent] = []  # lifecycle events for the live bus
            applied = 0
            with self._write(conn):
                # Events first: a job's end is numbered after every event its attempt stored.
                conn.executemany(self._sql["insert_event"], event_rows)
                for item in completions:
                    row = outcome_row(item, default_ttl)
                    params = {
                        "id": str(item.job_id),
                        "owner": item.lease_owner,
                        "attempt": item.attempt,
                        "now": now,
                        "result": row.result,
                        "error": row.error,
                        "traceback": row.traceback,
                        "retry_at": row.retry_at.timestamp() if row.retry_at else None,
                        "result_ttl": row.result_ttl,
                        "event_seq": item.event_seq,
                    }
                    ends_as = _ENDS_JOB.get(row.outcome)
                    start_seq = item.start_seq
                    if row.outcome is not AttemptOutcome.SUCCEEDED or not start_seq:
                        found = conn.execute(self._sql["job_status"], params).fetchone()
                        if found is not None:
                            start_seq = start_seq or found[2]
                            if found[1] and row.outcome is not AttemptOutcome.SUCCEEDED:
                                # Its cancellation was requested: it ends cancelled, whatever
                                # the attempt did short of succeeding, with the requested reason.
                                ends_as = JobStatus.CANCELLED
                    statement = (
                        "complete_cancelled"
                        if ends_as is JobStatus.CANCELLED
                        else self._COMPLETION_STATEMENTS[row.outcome]
                    )
                    ended = conn.execute(self._sql[statement], params).fetchone()
                    if ended is None:
                        logger.info("dropping the outcome of job %s: lease lost", item.job_id)
                        continue
                    applied += 1
                    status, attempt, seq, error, run_at = ended
                    if lifecycle:
                        changes.append(
                            lifecycle_event(
                                item.job_id,
                                seq,
                                item.ended_at,
                                JobStatus(status),
                                attempt,
                                error,
                                _dt_required(run_at),
                            )
                        )
                    conn.execute(
                        self._sql["insert_attempt"],
                        {
                            "job_id": str(item.job_id),
                            "attempt": item.attempt,
                            "worker": item.lease_owner,
                            "started_at": item.started_at.timestamp(),
                            "ended_at": item.ended_at.timestamp(),
                            "outcome": row.outcome.value,
                            "error": row.error,
                            "traceback": row.traceback,
                            **_end_columns(start_seq, ended),
                        },
                    )
                    if ends_as is not None:
                        self._after_parent_ended(conn, str(item.job_id), ends_as, now)
            return Recorded(applied=applied, lifecycle=changes)

        return await self._run(complete)

    _COMPLETION_STATEMENTS = {
        AttemptOutcome.SUCCEEDED: "complete_succeeded",
        AttemptOutcome.FAILED: "complete_failed",
        AttemptOutcome.DEAD: "complete_dead",
        AttemptOutcome.RELEASED: "released_to_queued",
        AttemptOutcome.CANCELLED: "complete_cancelled",
    }

    async def leased_job_ids(self, owner: str | None, limit: int = 500) -> list[uuid.UUID]:
        def leased(conn: sqlite3.Connection) -> list[uuid.UUID]:
            params = {"owner": owner, "now": self.clock.now().timestamp(), "limit": limit}
            rows = conn.execute(self._sql["leased_job_ids"], params).fetchall()
            return [uuid.UUID(row[0]) for row in rows]

        return await self._run(leased)

    async def release_owner(
        self,
        owner: str,
        *,
        lost: bool,
        reason: str,
        seq_floors: Mapping[uuid.UUID, int] | None = None,
    ) -> int:
        return await self._run(
            lambda conn: self._end_leases(
                conn, "leases_of_owner", {"owner": owner}, lost, reason, seq_floors
            )
        )

    async def rescue_expired(
        self, limit: int = 500, seq_floors: Mapping[uuid.UUID, int] | None = None
    ) -> int:
        def rescue(conn: sqlite3.Connection) -> int:
            params = {"now": self.clock.now().timestamp(), "limit": limit}
            return self._end_leases(
                conn, "expired_leases", params, True, "lease expired", seq_floors
            )

        return await self._run(rescue)

    def _end_leases(
        self,
        conn: sqlite3.Connection,
        selector: str,
        params: dict[str, Any],
        lost: bool,
        reason: str,
        seq_floors: Mapping[uuid.UUID, int] | None,
    ) -> int:
        floors = {str(job_id): seq for job_id, seq in (seq_floors or {}).items()}
        now = self.clock.now().timestamp()
        ended = 0
        with self._write(conn):
            rows = conn.execute(self._sql[selector], params).fetchall()
            for job_id, attempt, max_attempts, owner, started_at, cancel_requested, seq in rows:
                error = f"{reason} (worker {owner})"
                update = {
                    "id": job_id,
                    "owner": owner,
                    "attempt": attempt,
                    "now": now,
                    "event_seq": floors.get(job_id, 0),
                }
                if cancel_requested:
                    # It was asked to stop: whatever ended the lease, it is not run again.
                    statement, outcome = "complete_cancelled", AttemptOutcome.CANCELLED
                    update.update(error="cancelled", result_ttl=self.settings.result_ttl)
                elif not lost:
                    statement, outcome = "released_to_queued", AttemptOutcome.RELEASED
                elif attempt >= max_attempts:
                    statement, outcome = "lost_to_dead", AttemptOutcome.LOST
                    update.update(error=error, result_ttl=self.settings.result_ttl)
                else:
                    statement, outcome = "lost_to_queued", AttemptOutcome.LOST
                    update["error"] = error
                changed = conn.execute(self._sql[statement], update).fetchone()
                if changed is None:
                    continue
                ended += 1
                conn.execute(
                    self._sql["insert_attempt"],
                    {
                        "job_id": job_id,
                        "attempt": attempt,
                        "worker": owner,
                        "started_at": started_at if started_at is not None else now,
                        "ended_at": now,
                        "outcome": outcome.value,
                        "error": error,
                        "traceback": None,
                        **_end_columns(seq, changed),
                    },
                )
                if statement in ("lost_to_dead", "complete_cancelled"):
                    status = JobStatus.DEAD if statement == "lost_to_dead" else JobStatus.CANCELLED
                    self._after_parent_ended(conn, job_id, status, now)
        return ended

    # Cancellation and manual operations ---------------------------------------------------

    async def cancel(self, job_id: uuid.UUID, reason: str) -> CancelResult:
        def cancel(conn: sqlite3.Connection) -> CancelResult:
            now = self.clock.now().timestamp()
            params = {
                "id": str(job_id),
                "now": now,
                "reason": reason,
                "default_ttl": self.settings.result_ttl,
            }
            with self._write(conn):
                found = conn.execute(self._sql["job_status"], params).fetchone()
                if found is None:
                    raise JobNotFoundError(job_id)
                if conn.execute(self._sql["cancel_waiting"], params).rowcount == 1:
                    self._after_parent_ended(conn, str(job_id), JobStatus.CANCELLED, now)
                    return CancelResult.CANCELLED
                if conn.execute(self._sql["request_cancel"], params).rowcount == 1:
                    return CancelResult.REQUESTED
                return CancelResult.FINISHED

        return await self._run(cancel)

    async def cancel_requests(self, owner: str) -> list[uuid.UUID]:
        def requests(conn: sqlite3.Connection) -> list[uuid.UUID]:
            rows = conn.execute(self._sql["cancel_requests"], {"owner": owner})
            return [uuid.UUID(row[0]) for row in rows]

        return await self._run(requests)

    async def retry_job(self, job_id: uuid.UUID) -> None:
        def retry(conn: sqlite3.Connection) -> None:
            params = {"id": str(job_id), "now": self.clock.now().timestamp()}
            with self._write(conn):
                found = conn.execute(self._sql["job_status"], params).fetchone()
                if found is None:
                    raise JobNotFoundError(job_id)
                if conn.execute(self._sql["retry_dead"], params).rowcount != 1:
                    raise InvalidJobStateError(job_id, found[0], "only dead jobs can be retried")

        await self._run(retry)

    async def delete_job(self, job_id: uuid.UUID) -> None:
        def delete(conn: sqlite3.Connection) -> None:
            params = {"id": str(job_id)}
            with self._write(conn):
                found = conn.execute(self._sql["job_status"], params).fetchone()
                if found is None:
                    raise JobNotFoundError(job_id)
                if found[0] == JobStatus.RUNNING:
                    raise InvalidJobStateError(job_id, found[0], "cancel it first")
                for statement in ("delete_events", "delete_attempts", "delete_job"):
                    conn.execute(self._sql[statement], params)
                # Continuations waiting on it will never see it end: cancel them now.
                conn.execute(
                    self._sql["cancel_continuations"],
                    {
                        **params,
                        "now": self.clock.now().timestamp(),
                        "reason": parent_ended_reason(job_id, None),
                        "default_ttl": self.settings.result_ttl,
                    },
                )

        await self._run(delete)

    async def resolve_continuations(self, limit: int = 500) -> int:
        def resolve(conn: sqlite3.Connection) -> int:
            with self._write(conn):
                rows = conn.execute(
                    self._sql["orphaned_continuations"], {"limit": limit}
                ).fetchall()
                for child, parent, parent_status in rows:
                    status = JobStatus(parent_status) if parent_status else None
                    self._settle_awaiting(conn, child, status, parent)
            return len(rows)

        return await self._run(resolve)

    # Events -------------------------------------------------------------------------------

    async def read_events(
        self, job_id: uuid.UUID, after_seq: int = 0, limit: int = 100, *, transient: bool = False
    ) -> list[JobEvent]:
        def read(conn: sqlite3.Connection) -> list[JobEvent]:
            params = {
                "job_id": str(job_id),
                "after_seq": after_seq,
                "limit": limit,
                "transient": transient,
            }
            # One snapshot: rows and the events derived from the job's rows must agree (a
            # completion committed between two reads would otherwise show its end before the
            # events stored with it, or the attempt twice).
            with self._snapshot(conn):
                stored = [
                    JobEvent(
                        job_id=job_id,
                        seq=seq,
                        kind=EventKind(kind),
                        occurred_at=_dt_required(occurred_at),
                        payload=msgspec.Raw(bytes(payload)),
                    )
                    for _id, seq, kind, occurred_at, payload in conn.execute(
                        self._sql["read_events"], params
                    )
                ]
                derived = self._derived_events(conn, job_id, after_seq)
                if derived:
                    # Rows stored by earlier versions stand for the same events: never twice.
                    seqs = _json_list([str(event.seq) for event in derived])
                    kept = {
                        row[0]
                        for row in conn.execute(
                            self._sql["stored_seqs"], {"job_id": str(job_id), "seqs": seqs}
                        )
                    }
                    stored += [event for event in derived if event.seq not in kept]
                    stored.sort(key=lambda event: event.seq)
            return stored[:limit]

        return await self._run(read)

    def _derived_events(
        self, conn: sqlite3.Connection, job_id: uuid.UUID, after_seq: int
    ) -> list[JobEvent]:
        """The events no row stores (version 6): each attempt's `running` event and the
        lifecycle event that ended it, from its attempt row (and the running attempt's from the
        job's row), and a succeeded job's `result` event, from its result."""
        params = {"job_id": str(job_id), "after_seq": after_seq}
        job = conn.execute(self._sql["running_event"], params).fetchone()
        if job is None:
            return []
        status, attempt, started_at, event_seq, result = job
        events: list[JobEvent] = []
        for row in conn.execute(self._sql["attempt_events"], params):
            number, started, ended, start_seq, end_seq = row[:5]
            end_status, end_attempt, end_error, end_run_at = row[5:]
            if start_seq is not None and start_seq > after_seq:
                events.append(
                    lifecycle_event(
                        job_id, start_seq, _dt_required(started), JobStatus.RUNNING, number
                    )
                )
            if end_seq is None:
                continue
            ended_at = _dt_required(ended)
            if end_seq > after_seq:
                events.append(
                    lifecycle_event(
                        job_id,
                        end_seq,
                        ended_at,
                        JobStatus(end_status),
                        end_attempt,
                        end_error,
                        _dt(end_run_at),
                    )
                )
            if (
                self.derives_result_events
                and end_status == JobStatus.SUCCEEDED
                and status == JobStatus.SUCCEEDED
                and end_seq - 1 > max(after_seq, start_seq or 0)
            ):
                events.append(
                    JobEvent(
                        job_id=job_id,
                        seq=end_seq - 1,
                        kind=EventKind.RESULT,
                        occurred_at=ended_at,
                        payload=msgspec.Raw(b'{"value":' + bytes(result or b"null") + b"}"),
                    )
                )
        if status == JobStatus.RUNNING and event_seq > after_seq:
            events.append(
                lifecycle_event(
                    job_id, event_seq, _dt_required(started_at), JobStatus.RUNNING, attempt
                )
            )
        return events

    async def subscribe_events(
        self, on_events: Callable[[set[uuid.UUID] | None], None]
    ) -> Subscription:
        return NoSubscription()  # readers poll

    async def purge_transient_events(self, before: datetime, limit: int = 5000) -> int:
        def purge(conn: sqlite3.Connection) -> int:
            params = {"before": before.timestamp(), "limit": limit}
            with self._write(conn):
                return conn.execute(self._sql["purge_transient_events"], params).rowcount

        return await self._run(purge)

    # Leadership ---------------------------------------------------------------------------

    def leader_lease(self, name: str, holder: str, ttl: float) -> LeaderLease:
        return _LeaseRow(self, name, holder, ttl)

    # Queues -------------------------------------------------------------------------------

    async def set_queue_paused(self, queue: str, paused: bool) -> None:
        def pause(conn: sqlite3.Connection) -> None:
            params = {"queue": queue, "paused": int(paused), "now": self.clock.now().timestamp()}
            with self._write(conn):
                conn.execute(self._sql["set_queue_paused"], params)

        await self._run(pause)

    async def paused_queues(self) -> set[str]:
        return await self._run(
            lambda conn: {row[0] for row in conn.execute(self._sql["paused_queues"])}
        )

    async def queues(self) -> list[QueueInfo]:
        def queues(conn: sqlite3.Connection) -> list[QueueInfo]:
            counts: dict[str, dict[str, int]] = {}
            for queue, status, n in conn.execute(self._sql["queue_counts"]):
                counts.setdefault(queue, {})[status] = n
            paused = {q: bool(p) for q, p in conn.execute(self._sql["queue_states"])}
            return [
                QueueInfo(name=name, paused=paused.get(name, False), counts=counts.get(name, {}))
                for name in sorted(set(counts) | set(paused))
            ]

        return await self._run(queues)

    # Reading ------------------------------------------------------------------------------

    async def get(self, job_id: uuid.UUID) -> JobRecord | None:
        def get(conn: sqlite3.Connection) -> JobRecord | None:
            row = conn.execute(self._sql["get_job"], {"id": str(job_id)}).fetchone()
            return None if row is None else _record(row)

        return await self._run(get)

    async def list_jobs(
        self, filter: JobFilter, *, limit: int = 50, offset: int = 0
    ) -> list[JobRecord]:
        params = {
            "status": filter.status.value if filter.status else None,
            "job_type": filter.job_type,
            "queue": filter.queue,
            "idempotency_key": filter.idempotency_key,
            "limit": limit,
            "offset": offset,
        }
        return await self._run(
            lambda conn: [_record(row) for row in conn.execute(self._sql["list_jobs"], params)]
        )

    async def count_by_status(self) -> dict[JobStatus, int]:
        def count(conn: sqlite3.Connection) -> dict[JobStatus, int]:
            counts = dict.fromkeys(JobStatus, 0)
            for status, n in conn.execute(self._sql["count_by_status"]):
                counts[JobStatus(status)] = n
            return counts

        return await self._run(count)

    async def attempts(self, job_id: uuid.UUID) -> list[AttemptRecord]:
        def attempts(conn: sqlite3.Connection) -> list[AttemptRecord]:
            rows = conn.execute(self._sql["list_attempts"], {"job_id": str(job_id)})
            return [
                AttemptRecord(
                    job_id=uuid.UUID(row[0]),
                    attempt=row[1],
                    worker=row[2],
                    started_at=_dt_required(row[3]),
                    ended_at=_dt_required(row[4]),
                    outcome=AttemptOutcome(row[5]),
                    error=row[6],
                    traceback=row[7],
                )
                for row in rows
            ]

        return await self._run(attempts)

    async def purge_expired(self, limit: int = 500) -> int:
        def purge(conn: sqlite3.Connection) -> int:
            now = self.clock.now().timestamp()
            with self._write(conn):
                ids = [
                    {"id": row[0]}
                    for row in conn.execute(
                        self._sql["expired_job_ids"], {"now": now, "limit": limit}
                    )
                ]
                for statement in ("delete_events", "delete_attempts", "delete_job"):
                    conn.executemany(self._sql[statement], ids)
            return len(ids)

        return await self._run(purge)

    # Beat: recurring definitions and the leader's heartbeat -------------------------------

    async def upsert_recurring(self, specs: Sequence[RecurringSpec]) -> None:
        def upsert(conn: sqlite3.Connection) -> None:
            now = self.clock.now().timestamp()
            with self._write(conn):
                for spec in specs:
                    conn.execute(
                        self._sql["upsert_recurring"],
                        {**msgspec.structs.asdict(spec), "now": now},
                    )

        await self._run(upsert)

    async def list_recurring(self) -> list[RecurringJob]:
        def read(conn: sqlite3.Connection) -> list[RecurringJob]:
            return [
                RecurringJob(
                    name=row[0],
                    job_type=row[1],
                    cron=row[2],
                    timezone=row[3],
                    args=bytes(row[4]),
                    enabled=bool(row[5]),
                    last_fire_at=_dt(row[6]),
                    next_fire_at=_dt(row[7]),
                    updated_at=_dt_required(row[8]),
                )
                for row in conn.execute(self._sql["list_recurring"])
            ]

        return await self._run(read)

    async def set_recurring_enabled(self, name: str, enabled: bool) -> bool:
        def update(conn: sqlite3.Connection) -> bool:
            params = {"name": name, "enabled": int(enabled), "now": self.clock.now().timestamp()}
            with self._write(conn):
                return conn.execute(self._sql["set_recurring_enabled"], params).rowcount == 1

        return await self._run(update)

    async def fire_recurring(
        self, name: str, instant: datetime, next_fire_at: datetime, job: NewJob
    ) -> EnqueueResult | None:
        def fire(conn: sqlite3.Connection) -> EnqueueResult | None:
            params = {
                "name": name,
                "instant": instant.timestamp(),
                "next_fire_at": next_fire_at.timestamp(),
            }
            row = _job_row(job)
            with self._write(conn):
                if conn.execute(self._sql["fire_recurring"], params).rowcount != 1:
                    return None
                if conn.execute(self._sql["enqueue"], row).rowcount == 1:
                    return EnqueueResult(job.id)
                existing = conn.execute(self._sql["id_by_idempotency_key"], row).fetchone()
                return EnqueueResult(uuid.UUID(existing[0]), created=False)

        return await self._run(fire)

    async def advance_recurring(self, name: str, next_fire_at: datetime) -> None:
        def advance(conn: sqlite3.Connection) -> None:
            params = {"name": name, "next_fire_at": next_fire_at.timestamp()}
            with self._write(conn):
                conn.execute(self._sql["advance_recurring"], params)

        await self._run(advance)

    async def record_beat_leader(self, name: str, term: LeaseTerm, expires_at: datetime) -> None:
        def record(conn: sqlite3.Connection) -> None:
            params = {
                "name": name,
                "holder": term.holder,
                "mechanism": term.mechanism,
                "token": term.token,
                "since": term.since.timestamp(),
                "now": self.clock.now().timestamp(),
                "expires_at": expires_at.timestamp(),
            }
            with self._write(conn):
                conn.execute(self._sql["record_beat_leader"], params)

        await self._run(record)

    async def clear_beat_leader(self, name: str, token: str) -> None:
        def clear(conn: sqlite3.Connection) -> None:
            with self._write(conn):
                conn.execute(self._sql["clear_beat_leader"], {"name": name, "token": token})

        await self._run(clear)

    async def beat_leader(self, name: str = BEAT_LEASE) -> BeatLeader | None:
        def read(conn: sqlite3.Connection) -> BeatLeader | None:
            params = {"name": name, "now": self.clock.now().timestamp()}
            row = conn.execute(self._sql["beat_leader"], params).fetchone()
            if row is None:
                return None
            return BeatLeader(
                holder=row[0],
                mechanism=row[1],
                token=row[2],
                since=_dt_required(row[3]),
                renewed_at=_dt_required(row[4]),
                expires_at=_dt_required(row[5]),
            )

        return await self._run(read)


class _LeaseRow:
    """A leader lease as a row with an expiry: the single writer makes taking it atomic."""

    mechanism = "sqlite-lease"

    def __init__(self, storage: SQLiteStorage, name: str, holder: str, ttl: float) -> None:
        self._storage = storage
        self._name = name
        self._holder = holder
        self._ttl = ttl
        self.term: LeaseTerm | None = None

    def _params(self, token: str) -> dict[str, Any]:
        now = self._storage.clock.now().timestamp()
        return {
            "name": self._name,
            "holder": self._holder,
            "token": token,
            "now": now,
            "until": now + self._ttl,
        }

    async def acquire(self) -> bool:
        params = self._params(uuid.uuid4().hex)

        def take(conn: sqlite3.Connection) -> bool:
            with self._storage._write(conn):
                return bool(conn.execute(self._storage._sql["lease_acquire"], params).rowcount)

        if not await self._storage._run(take):
            return False
        self.term = LeaseTerm(
            holder=self._holder,
            since=_dt_required(params["now"]),
            mechanism=self.mechanism,
            token=params["token"],
        )
        return True

    async def renew(self) -> bool:
        if self.term is None:
            return False
        params = self._params(self.term.token)

        def renew(conn: sqlite3.Connection) -> bool:
            with self._storage._write(conn):
                return bool(conn.execute(self._storage._sql["lease_renew"], params).rowcount)

        if not await self._storage._run(renew):
            self.term = None
            return False
        return True

    async def release(self) -> None:
        if self.term is not None:
            params = self._params(self.term.token)

            def release(conn: sqlite3.Connection) -> None:
                with self._storage._write(conn):
                    conn.execute(self._storage._sql["lease_release"], params)

            await self._storage._run(release)
        self.term = None

    async def current(self) -> LeaseTerm | None:
        params = self._params("")
        row = await self._storage._run(
            lambda conn: conn.execute(self._storage._sql["lease_current"], params).fetchone()
        )
        if row is None:
            return None
        return LeaseTerm(
            holder=row[0], token=row[1], since=_dt_required(row[2]), mechanism=self.mechanism
        )

    async def close(self) -> None:
        return None


_ENDS_JOB = {
    AttemptOutcome.SUCCEEDED: JobStatus.SUCCEEDED,
    AttemptOutcome.DEAD: JobStatus.DEAD,
    AttemptOutcome.CANCELLED: JobStatus.CANCELLED,
}


def _end_columns(start_seq: int, ended: Sequence[Any]) -> dict[str, Any]:
    """The attempt row's record of its `running` event's number and of its end's lifecycle
    event (`ended`: the job's status, attempt, event_seq, error and run_at after it)."""
    status, attempt, seq, error, run_at = ended
    return {
        "start_seq": start_seq,
        "end_seq": seq,
        "end_status": status,
        "end_attempt": attempt,
        "end_error": error,
        "end_run_at": run_at,
    }


def _event_row(event: JobEvent, transient: bool) -> dict[str, Any]:
    return {
        "job_id": str(event.job_id),
        "seq": event.seq,
        "kind": event.kind.value,
        "occurred_at": event.occurred_at.timestamp(),
        "payload": bytes(event.payload),
        "transient": int(transient),
    }


def _json_list(values: Sequence[str]) -> str:
    return msgspec.json.encode(list(values)).decode()


def _record(row: Sequence[Any]) -> JobRecord:
    return job_record(row, to_uuid=uuid.UUID, to_time=_dt_required, to_bytes=bytes)


def _dt(value: float | None) -> datetime | None:
    return None if value is None else _dt_required(value)


def _job_row(job: NewJob) -> dict[str, Any]:
    return {
        "id": str(job.id),
        "job_type": job.job_type,
        "queue": job.queue,
        "priority": job.priority,
        "status": job.status.value,
        "args": job.args,
        "max_attempts": job.max_attempts,
        "enqueued_at": job.enqueued_at.timestamp(),
        "run_at": job.run_at.timestamp(),
        "idempotency_key": job.idempotency_key,
        "continues_job_id": str(job.continues_job_id) if job.continues_job_id else None,
        "result_ttl": job.result_ttl,
    }
