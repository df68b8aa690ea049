"""SQL Server storage over pyodbc, run off the event loop.

pyodbc blocks, so each storage owns one connection used from one dedicated thread, as the SQLite
backend does. The connection is in autocommit mode: every named statement is one batch, atomic on
its own (a single statement, or an explicit transaction with XACT_ABORT ON). Claims lock rows with
`UPDLOCK, READPAST`; batches travel as one JSON document unpacked with OPENJSON. There are no
notifications: idle workers poll. The schema is the user's: `jobworker migrate` applies it.

Written against the T-SQL and pyodbc documentation; this project's CI has no SQL Server engine
(see docs/sqlserver.md), so the conformance suite runs against one only when
JOBWORKER_TEST_SQLSERVER_DSN points at it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

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
    SCHEMA_TOKEN,
    check_schema_name,
    job_record,
    lifecycle_event,
    outcome_row,
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
logger = logging.getLogger("jobworker.storage.sqlserver")

DEFAULT_DRIVER = "ODBC Driver 18 for SQL Server"
_SYSTEM_SCHEMAS = frozenset({"sys", "information_schema"})
_SCHEMES = ("mssql+pyodbc", "mssql")
_ODBC_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_ ]*$")
_URL_PARTS = {"server", "address", "addr", "database", "uid", "pwd"}
_GO = re.compile(r"^[ \t]*GO[ \t]*(?:--[^\n]*)?$", re.IGNORECASE | re.MULTILINE)
_COMMENT = re.compile(r"--[^\n]*")
_DECLARED = re.compile(
    r"^[ \t]*DECLARE[ \t]+@([A-Za-z_][A-Za-z0-9_]*)[ \t]+[^=;\n]+?=[ \t]*\?[ \t]*;[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)
_DEADLOCK_RETRIES = 5
_KEY_RACE_RETRIES = 3
_RELEASE_ALL = 100_000
_LATEST = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


# Configuration ------------------------------------------------------------------------------


def quoted_schema(name: str) -> str:
    """The schema name as a bracket-quoted identifier, after checking it is a plain name."""
    check_schema_name(name)
    if name in _SYSTEM_SCHEMAS:
        raise ConfigurationError(f"invalid schema name {name!r}: it is a SQL Server system schema")
    return f"[{name}]"


def render(sql: str, schema: str) -> str:
    return sql.replace(SCHEMA_TOKEN, quoted_schema(schema))


def rendered_scripts(schema: str) -> list[tuple[int, str, str]]:
    """The SQL Server schema scripts with the schema filled in (what `jobworker sql` prints)."""
    return [(v, name, render(text, schema)) for v, name, text in schema_scripts("sqlserver")]


def split_batches(script: str) -> list[str]:
    """A script's batches, split on `GO` lines as sqlcmd does; batches of only comments dropped."""
    batches = []
    for part in _GO.split(script):
        if _COMMENT.sub("", part).strip():
            batches.append(part.strip())
    return batches


def safe_url(url: str) -> str:
    """The URL with its password hidden, for messages."""
    return re.sub(r"//([^:/@]*):[^@]*@", r"//\1:***@", url)


def _odbc_value(value: str) -> str:
    """A value for an ODBC connection string, braced when it needs to be."""
    if value == "" or value != value.strip() or any(c in value for c in ";{}="):
        return "{" + value.replace("}", "}}") + "}"
    return value


def odbc_connection_string(url: str) -> str:
    """The ODBC connection string for a `mssql+pyodbc://` URL.

    `mssql+pyodbc://user:password@host:port/database?driver=...&Encrypt=yes`: host, port, database
    and credentials become SERVER, DATABASE, UID and PWD; `driver` defaults to ODBC Driver 18 for
    SQL Server; other query parameters are passed through as ODBC keywords.
    `mssql+pyodbc:///?odbc_connect=<url-encoded connection string>` is used as it is.
    """
    bad = f"bad SQL Server URL {safe_url(url)!r}"
    forms = (
        "expected mssql+pyodbc://user:password@host:port/database?driver=... "
        "or mssql+pyodbc:///?odbc_connect=..."
    )
    scheme, sep, _rest = url.partition("://")
    if not sep or scheme.lower() not in _SCHEMES:
        raise ConfigurationError(f"{bad}: {forms}")
    parts = urlsplit(url)
    if parts.fragment:
        raise ConfigurationError(f"{bad}: a URL fragment ('#...') is not allowed")
    try:
        params = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise ConfigurationError(f"{bad}: the query string does not parse") from None
    seen: set[str] = set()
    for key, _value in params:
        if key.lower() in seen:
            raise ConfigurationError(f"{bad}: parameter {key!r} is given twice")
        seen.add(key.lower())

    if "odbc_connect" in seen:
        if parts.netloc or parts.path not in ("", "/") or len(params) != 1:
            raise ConfigurationError(
                f"{bad}: with odbc_connect, give nothing else: mssql+pyodbc:///?odbc_connect=..."
            )
        connect = params[0][1].strip()
        if "=" not in connect:
            raise ConfigurationError(f"{bad}: odbc_connect is not an ODBC connection string")
        return connect

    host = unquote(parts.hostname or "")
    if not host:
        raise ConfigurationError(f"{bad}: no host; {forms}")
    try:
        port = parts.port
    except ValueError:
        raise ConfigurationError(f"{bad}: the port is not a number from 1 to 65535") from None
    if port == 0:
        raise ConfigurationError(f"{bad}: the port is not a number from 1 to 65535")
    database = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
    if not database:
        raise ConfigurationError(f"{bad}: no database name; {forms}")
    if "/" in database:
        raise ConfigurationError(f"{bad}: the database name contains '/'")

    driver = DEFAULT_DRIVER
    extra: list[str] = []
    for key, value in params:
        if key.lower() == "driver":
            driver = value.strip().strip("{}")
            if not driver:
                raise ConfigurationError(f"{bad}: the driver parameter is empty")
        elif key.lower() in _URL_PARTS:
            raise ConfigurationError(
                f"{bad}: give {key!r} in the URL itself (user:password@host:port/database), "
                "not as a query parameter"
            )
        elif not _ODBC_KEY.match(key):
            raise ConfigurationError(f"{bad}: {key!r} is not an ODBC keyword")
        else:
            extra.append(f"{key}={_odbc_value(value)}")

    fields = [
        "DRIVER={" + driver.replace("}", "}}") + "}",
        f"SERVER={_odbc_value(host if port is None else f'{host},{port}')}",
        f"DATABASE={_odbc_value(database)}",
    ]
    if parts.username is not None:
        fields.append(f"UID={_odbc_value(unquote(parts.username))}")
        fields.append(f"PWD={_odbc_value(unquote(parts.password or ''))}")
    return ";".join(fields + extra)


def import_pyodbc() -> Any:
    """pyodbc, imported only when this backend is used."""
    try:
        import pyodbc
    except ModuleNotFoundError as exc:
        if exc.name not in (None, "pyodbc"):
            raise
        raise MissingExtraError("pyodbc", "sqlserver") from exc
    except ImportError as exc:  # installed, but its native library is missing
        raise ConfigurationError(
            f"pyodbc is installed but cannot be loaded ({exc}); it needs the unixODBC library "
            "(Debian/Ubuntu: apt-get install unixodbc) and Microsoft's ODBC Driver 18 for "
            "SQL Server"
        ) from exc
    return pyodbc


# Statements ---------------------------------------------------------------------------------


def parameter_names(sql: str) -> tuple[str, ...]:
    """The parameters a statement declares (`DECLARE @name type = ?;` lines), in order."""
    code = _COMMENT.sub("", sql)
    names = tuple(_DECLARED.findall(code))
    if code.count("?") != len(names):
        raise ValueError(
            f"{code.count('?')} parameter markers but {len(names)} `DECLARE @name type = ?;` "
            "lines: every marker must stand alone in a declaration"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"a parameter is declared twice: {names}")
    return names


class Statement:
    """A named statement and the parameters it declares, bound by name."""

    __slots__ = ("name", "params", "sql")

    def __init__(self, name: str, sql: str) -> None:
        self.name = name
        # Comments are not sent: an apostrophe in one must not look like a string literal to
        # the driver while it looks for parameter markers (no literal in these files holds --).
        self.sql = "\n".join(line for line in _COMMENT.sub("", sql).splitlines() if line.strip())
        try:
            self.params = parameter_names(self.sql)
        except ValueError as exc:
            raise ValueError(f"sqlserver/queries.sql, statement {name!r}: {exc}") from None

    def bind(self, values: Mapping[str, object]) -> list[object]:
        if set(values) != set(self.params):
            raise TypeError(
                f"statement {self.name!r} takes {list(self.params)}, was given {sorted(values)}"
            )
        bound = [values[name] for name in self.params]
        for name, value in zip(self.params, bound, strict=True):
            if value is None:  # the driver would have to guess a NULL's type: use JSON instead
                raise TypeError(f"parameter @{name} of statement {self.name!r} is None")
        return bound


def statements(schema: str) -> dict[str, Statement]:
    """Every named statement of sql/sqlserver/queries.sql, rendered for `schema`."""
    return {
        name: Statement(name, render(text, schema)) for name, text in queries("sqlserver").items()
    }


# Values -------------------------------------------------------------------------------------


class _AppLockLease:
    """`sp_getapplock` with a session owner, on a dedicated connection of its own: held as long
    as that session lives, released by the server the moment it ends (a dead leader needs no TTL
    to pass). The `leader_leases` row only records the term, for status."""

    mechanism = "sqlserver-applock"

    def __init__(self, storage: SQLServerStorage, name: str, holder: str, ttl: float) -> None:
        self._storage = storage
        self._name = name
        self._holder = holder
        self._ttl = ttl
        self._resource = f"jobworker.leader.{storage.schema_name}.{name}"
        self._conn: Any = None
        self._thread: ThreadPoolExecutor | None = None
        self.term: LeaseTerm | None = None

    async def _on_own_connection(self, fn: Callable[[Any], T]) -> T:
        """Run `fn(connection)` on the lease's connection, from the lease's own thread."""
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="jobworker-applock")

        def run() -> T:
            if self._conn is None:
                self._conn = self._storage._connect()
            try:
                return fn(self._conn)
            except self._storage._pyodbc.Error:
                self._drop()  # the session ends, and the lock with it
                raise

        return await asyncio.get_running_loop().run_in_executor(self._thread, run)

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except self._storage._pyodbc.Error as exc:
                logger.debug("closing the lease connection failed: %s", exc)

    async def acquire(self) -> bool:
        now = self._storage.clock.now()
        token = uuid.uuid4().hex
        params = {
            "lease_name": self._name,
            "resource": self._resource,
            "holder": self._holder,
            "token": token,
            "now": _ts(now),
            "until": _ts(now + timedelta(seconds=self._ttl)),
        }
        rows = await self._on_own_connection(
            lambda conn: self._storage._query(conn, "lease_acquire", **params)
        )
        if not rows or not rows[0][0]:
            return False
        self.term = LeaseTerm(holder=self._holder, since=now, mechanism=self.mechanism, token=token)
        return True

    async def renew(self) -> bool:
        if self.term is None:
            return False
        params = {
            "lease_name": self._name,
            "resource": self._resource,
            "token": self.term.token,
            "until": _ts(self._storage.clock.now() + timedelta(seconds=self._ttl)),
        }
        try:
            rows = await self._on_own_connection(
                lambda conn: self._storage._query(conn, "lease_renew", **params)
            )
        except self._storage._pyodbc.Error:
            rows = []
        if not rows or not rows[0][0]:
            self.term = None
            return False
        return True

    async def release(self) -> None:
        term, self.term = self.term, None
        if term is not None and self._conn is not None:
            params = {"lease_name": self._name, "resource": self._resource, "token": term.token}
            try:
                await self._on_own_connection(
                    lambda conn: self._storage._query(conn, "lease_release", **params)
                )
            except self._storage._pyodbc.Error as exc:
                logger.debug("releasing the leader lease failed: %s", exc)
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._drop)

    async def current(self) -> LeaseTerm | None:
        params = {"lease_name": self._name, "now": _ts(self._storage.clock.now())}
        rows = await self._storage._run(
            lambda conn: self._storage._query(conn, "lease_current", **params)
        )
        if not rows:
            return None
        holder, token, since = rows[0]
        return LeaseTerm(
            holder=holder, token=token, since=_dt_required(since), mechanism=self.mechanism
        )

    async def close(self) -> None:
        await self.release()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.shutdown(wait=False)


def _ts(value: datetime) -> str:
    """A time as ISO 8601 text in UTC without offset: what the datetime2(6) columns hold."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


def _expiry(now: datetime, ttl: float) -> datetime:
    try:
        return now + timedelta(seconds=ttl)
    except (OverflowError, ValueError):
        return _LATEST


def _dt_required(value: Any) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime from the driver, got {value!r}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _uuid(value: Any) -> uuid.UUID:
    """pyodbc returns uniqueidentifier as upper-case text (or a UUID with native_uuid)."""
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _bytes(value: Any) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8")


def _job_fields(job: NewJob) -> dict[str, Any]:
    """A new job as the statements that insert jobs read it (OPENJSON)."""
    return {
        "id": str(job.id),
        "job_type": job.job_type,
        "queue": job.queue,
        "priority": job.priority,
        "status": job.status.value,
        "args": job.args.decode("utf-8"),
        "max_attempts": job.max_attempts,
        "enqueued_at": _ts(job.enqueued_at),
        "run_at": _ts(job.run_at),
        "idempotency_key": job.idempotency_key,
        "continues_job_id": _optional_id(job.continues_job_id),
        "result_ttl": job.result_ttl,
    }


def _json(value: object) -> str:
    return msgspec.json.encode(value).decode("utf-8")


def _sqlstate(exc: BaseException) -> str:
    return exc.args[0] if exc.args and isinstance(exc.args[0], str) else ""


def _is_deadlock(exc: BaseException) -> bool:
    return _sqlstate(exc) == "40001" or "(1205)" in str(exc)


def _is_connection_lost(exc: BaseException) -> bool:
    return _sqlstate(exc).startswith("08")


def _execute_plain(conn: Any, sql: str) -> None:
    """A batch without parameters (sent as it is, not through sp_executesql), read to its end."""
    cursor = conn.cursor()
    try:
        cursor.execute(sql)
        _result_rows(cursor)
    finally:
        cursor.close()


def _result_rows(cursor: Any) -> list[Any]:
    """The first result set of a batch; then every later one is read, so that the whole batch
    (its COMMIT included) has run and any error in it is raised here."""
    while cursor.description is None:
        if not cursor.nextset():
            return []
    rows: list[Any] = cursor.fetchall()
    while cursor.nextset():
        pass
    return rows


# The backend --------------------------------------------------------------------------------


class SQLServerStorage:
    dialect = "sqlserver"
    derives_result_events = False

    def __init__(
        self, url: str, settings: Settings | None = None, clock: Clock = system_clock
    ) -> None:
        self._pyodbc = import_pyodbc()
        self.url = url
        self.settings = settings or Settings(database_url=url)
        self.clock = clock
        self.schema_name = self.settings.database_schema
        quoted_schema(self.schema_name)
        self._connection_string = odbc_connection_string(url)
        self._statements = statements(self.schema_name)
        self._conn: Any = None
        self._executor: ThreadPoolExecutor | None = None
        self._pid = os.getpid()
        self._open_lock = threading.Lock()

        # Every role is this object until the backend is split by role.
        self.schema = self.jobs = self.control = self.inspection = self.events = self
        self.maintenance = self.recurring = self.leadership = self

    # Connection ---------------------------------------------------------------------------

    async def open(self) -> None:
        try:
            await self._run(lambda conn: None, retry=False)
        except self._pyodbc.Error as exc:
            raise ConfigurationError(
                f"cannot connect to SQL Server at {safe_url(self.url)}: {exc}"
            ) from exc

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None and self._pid == os.getpid():
            await asyncio.get_running_loop().run_in_executor(executor, self._drop_connection)
        self._conn = None
        if executor is not None:
            executor.shutdown(wait=False)

    def _connect(self) -> Any:
        timeout = max(1, round(self.settings.connect_timeout))
        conn = self._pyodbc.connect(self._connection_string, autocommit=True, timeout=timeout)
        try:
            # Any error rolls back the whole transaction, also in the migration's plain batches.
            _execute_plain(conn, "SET XACT_ABORT ON;")
        except BaseException:
            conn.close()
            raise
        return conn

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except self._pyodbc.Error as exc:
                logger.debug("closing a SQL Server connection failed: %s", exc)

    def _rollback(self, conn: Any) -> None:
        """End a transaction an error left open (XACT_ABORT usually has already)."""
        try:
            _execute_plain(conn, "IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION;")
        except self._pyodbc.Error:
            self._drop_connection()

    async def _run(self, fn: Callable[[Any], T], *, retry: bool = True) -> T:
        """Run `fn(connection)` on the storage's own thread. `retry`: `fn` is safe to repeat on a
        fresh connection when the first one was lost."""
        if self._pid != os.getpid():
            raise RuntimeError("a storage opened before fork() cannot be used in the child")
        if self._executor is None:
            with self._open_lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(1, thread_name_prefix="jobworker-sqlserver")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, fn, retry)

    def _call(self, fn: Callable[[Any], T], retry: bool) -> T:
        deadlocks = 0
        reconnected = False
        while True:
            if self._conn is None:
                self._conn = self._connect()
            conn = self._conn
            try:
                return fn(conn)
            except self._pyodbc.Error as exc:
                lost = _is_connection_lost(exc)
                if lost:
                    self._drop_connection()
                else:
                    self._rollback(conn)
                # A deadlock victim's transaction was rolled back whole: run it again.
                if _is_deadlock(exc) and deadlocks < _DEADLOCK_RETRIES:
                    deadlocks += 1
                    logger.info("chosen as a deadlock victim; retrying (%d)", deadlocks)
                    time.sleep(min(0.02 * 2**deadlocks, 0.5))
                    continue
                if lost and retry and not reconnected:
                    reconnected = True
                    logger.debug("the SQL Server connection was lost (%s); retrying", exc)
                    continue
                raise

    def _query(self, conn: Any, name: str, **params: object) -> list[Any]:
        statement = self._statements[name]
        values = statement.bind(params)
        cursor = conn.cursor()
        try:
            cursor.execute(statement.sql, *values)
            return _result_rows(cursor)
        finally:
            cursor.close()

    def _scalar(self, conn: Any, name: str, **params: object) -> Any:
        rows = self._query(conn, name, **params)
        if not rows:
            raise RuntimeError(f"statement {name!r} returned no row")
        return rows[0][0]

    # Schema -------------------------------------------------------------------------------

    def _version(self, conn: Any) -> int:
        if not self._scalar(conn, "schema_table_exists"):
            return 0
        return int(self._scalar(conn, "schema_version") or 0)

    def _migrate(self, conn: Any) -> list[int]:
        """Every script not yet applied, batch by batch, in one transaction that holds an
        application lock, so that two migrations of one schema run one after the other."""
        applied: list[int] = []
        try:
            _execute_plain(conn, "BEGIN TRANSACTION;")
            resource = f"jobworker.migrate.{self.schema_name}"
            status = self._scalar(conn, "migration_lock", resource=resource)
            if status is None or int(status) < 0:
                raise ConfigurationError(
                    f"could not take the migration lock (sp_getapplock returned {status})"
                )
            current = self._version(conn)
            for version, _name, text in rendered_scripts(self.schema_name):
                if version <= current:
                    continue
                for batch in split_batches(text):
                    _execute_plain(conn, batch)
                applied.append(version)
            _execute_plain(conn, "COMMIT TRANSACTION;")
        except BaseException:
            self._rollback(conn)
            raise
        return applied

    async def migrate(self) -> list[int]:
        return await self._run(self._migrate)

    async def check_schema(self) -> None:
        latest = max(version for version, _, _ in schema_scripts("sqlserver"))
        current = await self._run(self._version)
        if current < latest:
            state = "has no jobworker schema" if current == 0 else f"has schema version {current}"
            raise SchemaMissingError(
                f"the database {state} (schema {self.schema_name!r}; this version needs {latest}); "
                f"run: jobworker migrate --database-url ..."
            )

    # Enqueue ------------------------------------------------------------------------------

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
        payload = _json([_job_fields(job) for job in jobs])

        def insert(conn: Any) -> list[EnqueueResult]:
            rows = self._enqueue_rows(conn, payload)
            missing = [row[3] for row in rows if row[3] is not None]
            if missing:  # nothing was stored
                raise JobNotFoundError(_uuid(missing[0]))
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
                    results.append(EnqueueResult(_uuid(job_id), created=False))
            return results

        return await self._run(insert, retry=False)

    def _enqueue_rows(self, conn: Any, payload: str) -> list[Any]:
        """The enqueue statement; a key taken by a concurrent enqueue between the check and the
        insert (the unique index objects) is answered on the next turn with its holder."""
        for turn in range(1, _KEY_RACE_RETRIES + 1):
            try:
                return self._query(
                    conn,
                    "enqueue",
                    jobs=payload,
                    now=_ts(self.clock.now()),
                    default_ttl=self.settings.result_ttl,
                )
            except self._pyodbc.IntegrityError as exc:
                if "jobs_idempotency_key" not in str(exc) or turn == _KEY_RACE_RETRIES:
                    raise
                self._rollback(conn)
        raise AssertionError("unreachable")

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
        caps = sorted((t, n) for t, n in (concurrency or {}).items() if t in job_types)
        capped = {t for t, _ in caps}
        now = self.clock.now()
        params = {
            "now": _ts(now),
            "queues": _json(list(queues)),
            "job_types": _json([t for t in job_types if t not in capped]),
            "limit": limit,
            "owner": owner,
            "lease_until": _ts(now + timedelta(seconds=lease_duration)),
            "caps": _json([{"job_type": t, "cap": n} for t, n in caps]),
            "lock_prefix": f"jobworker.cap.{self.schema_name}.",
        }
        # Not repeated on a lost connection: the worker's claim loop retries on its own.
        rows = await self._run(lambda conn: self._query(conn, "claim", **params), retry=False)
        rows.sort(key=lambda row: (-row[9], row[10]))
        return [
            ClaimedJob(
                id=_uuid(row[0]),
                job_type=row[1],
                queue=row[2],
                args=_bytes(row[3]),
                attempt=row[4],
                max_attempts=row[5],
                enqueued_at=_dt_required(row[6]),
                started_at=_dt_required(row[7]),
                result_ttl=row[8],
                event_seq=int(row[11]),
            )
            for row in rows
        ]

    async def extend_leases(self, owner: str, lease_duration: float) -> int:
        until = _ts(self.clock.now() + timedelta(seconds=lease_duration))
        return int(
            await self._run(
                lambda conn: self._scalar(conn, "extend_leases", owner=owner, lease_until=until)
            )
        )

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
        now = self.clock.now()
        outcomes = []
        for item in completions:
            row = outcome_row(item, self.settings.result_ttl)
            outcomes.append(
                {
                    "id": str(item.job_id),
                    "attempt": item.attempt,
                    "owner": item.lease_owner,
                    "outcome": row.outcome.value,
                    "result": _text(row.result),
                    "error": row.error,
                    "traceback": row.traceback,
                    "retry_at": _ts(row.retry_at) if row.retry_at is not None else None,
                    # Used only if the job ends (a cancel request can end any outcome).
                    "expires_at": _ts(_expiry(now, row.result_ttl)),
                    "started_at": _ts(item.started_at),
                    "ended_at": _ts(item.ended_at),
                    "event_seq": item.event_seq,
                }
            )
        stored = [_event_row(event, False) for event in events]
        stored += [_event_row(event, True) for event in transient]
        params = {
            "now": _ts(now),
            "outcomes": _json(outcomes),
            "events": _json(stored),
            "default_ttl": self.settings.result_ttl,
        }
        # Safe to repeat: a second run finds the leases already released and the events already
        # stored, and changes nothing.
        rows = await self._run(lambda conn: self._query(conn, "complete", **params))
        if len(rows) < len(completions):
            logger.info("dropped %d outcome(s) whose lease was lost", len(completions) - len(rows))
        return Recorded(applied=len(rows), lifecycle=[_lifecycle(row, now) for row in rows])

    async def leased_job_ids(self, owner: str | None, limit: int = 500) -> list[uuid.UUID]:
        if limit <= 0:
            return []
        params = {
            "expired": owner is None,
            "owner": owner or "",
            "now": _ts(self.clock.now()),
            "limit": limit,
        }
        rows = await self._run(lambda conn: self._query(conn, "leased_job_ids", **params))
        return [_uuid(row[0]) for row in rows]

    async def release_owner(
        self,
        owner: str,
        *,
        lost: bool,
        reason: str,
        seq_floors: Mapping[uuid.UUID, int] | None = None,
    ) -> int:
        return await self._end_leases(
            expired=False,
            owner=owner,
            lost=lost,
            reason=reason,
            limit=_RELEASE_ALL,
            seq_floors=seq_floors,
        )

    async def rescue_expired(
        self, limit: int = 500, seq_floors: Mapping[uuid.UUID, int] | None = None
    ) -> int:
        if limit <= 0:
            return 0
        return await self._end_leases(
            expired=True,
            owner="",
            lost=True,
            reason="lease expired",
            limit=limit,
            seq_floors=seq_floors,
        )

    async def _end_leases(
        self,
        *,
        expired: bool,
        owner: str,
        lost: bool,
        reason: str,
        limit: int,
        seq_floors: Mapping[uuid.UUID, int] | None,
    ) -> int:
        now = self.clock.now()
        floors = [{"id": str(job_id), "seq": seq} for job_id, seq in (seq_floors or {}).items()]
        params = {
            "expired": expired,
            "owner": owner,
            "now": _ts(now),
            "lost": lost,
            "reason": reason,
            "limit": limit,
            "expires_at": _ts(_expiry(now, self.settings.result_ttl)),
            "default_ttl": self.settings.result_ttl,
            "floors": _json(floors),
        }
        return int(await self._run(lambda conn: self._scalar(conn, "end_leases", **params)))

    # Cancellation and manual operations ---------------------------------------------------

    async def cancel(self, job_id: uuid.UUID, reason: str) -> CancelResult:
        params = {
            "id": str(job_id),
            "reason": reason,
            "now": _ts(self.clock.now()),
            "default_ttl": self.settings.result_ttl,
        }
        status, cancelled, requested = await self._run(
            lambda conn: self._query(conn, "cancel", **params)[0], retry=False
        )
        if status is None:
            raise JobNotFoundError(job_id)
        if cancelled:
            return CancelResult.CANCELLED
        return CancelResult.REQUESTED if requested else CancelResult.FINISHED

    async def cancel_requests(self, owner: str) -> list[uuid.UUID]:
        rows = await self._run(lambda conn: self._query(conn, "cancel_requests", owner=owner))
        return [_uuid(row[0]) for row in rows]

    async def retry_job(self, job_id: uuid.UUID) -> None:
        params = {"id": str(job_id), "now": _ts(self.clock.now())}
        status, retried = await self._run(
            lambda conn: self._query(conn, "retry_dead", **params)[0], retry=False
        )
        if status is None:
            raise JobNotFoundError(job_id)
        if not retried:
            raise InvalidJobStateError(job_id, status, "only dead jobs can be retried")

    async def delete_job(self, job_id: uuid.UUID) -> None:
        params = {
            "id": str(job_id),
            "now": _ts(self.clock.now()),
            "default_ttl": self.settings.result_ttl,
        }
        status, deleted = await self._run(
            lambda conn: self._query(conn, "delete_job", **params)[0], retry=False
        )
        if status is None:
            raise JobNotFoundError(job_id)
        if not deleted:
            raise InvalidJobStateError(job_id, status, "cancel it first")

    async def resolve_continuations(self, limit: int = 500) -> int:
        if limit <= 0:
            return 0
        params = {
            "limit": limit,
            "now": _ts(self.clock.now()),
            "default_ttl": self.settings.result_ttl,
        }
        return int(
            await self._run(lambda conn: self._scalar(conn, "resolve_continuations", **params))
        )

    # Events -------------------------------------------------------------------------------

    async def read_events(
        self, job_id: uuid.UUID, after_seq: int = 0, limit: int = 100, *, transient: bool = False
    ) -> list[JobEvent]:
        if limit <= 0:
            return []
        params = {
            "job_id": str(job_id),
            "after_seq": after_seq,
            "limit": limit,
            "transient": transient,
        }
        rows = await self._run(lambda conn: self._query(conn, "read_events", **params))
        return [
            JobEvent(
                job_id=job_id,
                seq=int(row[0]),
                kind=EventKind(row[1]),
                occurred_at=_dt_required(row[2]),
                payload=msgspec.Raw(_bytes(row[3])),
            )
            for row in rows
        ]

    async def subscribe_events(
        self, on_events: Callable[[set[uuid.UUID] | None], None]
    ) -> Subscription:
        return NoSubscription()  # no notifications on SQL Server: readers poll

    async def purge_transient_events(self, before: datetime, limit: int = 5000) -> int:
        if limit <= 0:
            return 0
        params = {"before": _ts(before), "limit": limit}
        return int(
            await self._run(lambda conn: self._scalar(conn, "purge_transient_events", **params))
        )

    # Queues -------------------------------------------------------------------------------

    def leader_lease(self, name: str, holder: str, ttl: float) -> LeaderLease:
        return _AppLockLease(self, name, holder, ttl)

    async def set_queue_paused(self, queue: str, paused: bool) -> None:
        params = {"queue": queue, "paused": paused, "now": _ts(self.clock.now())}
        await self._run(lambda conn: self._query(conn, "set_queue_paused", **params))

    async def paused_queues(self) -> set[str]:
        rows = await self._run(lambda conn: self._query(conn, "paused_queues"))
        return {row[0] for row in rows}

    async def queues(self) -> list[QueueInfo]:
        def read(conn: Any) -> tuple[list[Any], list[Any]]:
            return self._query(conn, "queue_counts"), self._query(conn, "queue_states")

        count_rows, state_rows = await self._run(read)
        counts: dict[str, dict[str, int]] = {}
        for queue, status, n in count_rows:
            counts.setdefault(queue, {})[status] = int(n)
        paused = {queue: bool(flag) for queue, flag in state_rows}
        return [
            QueueInfo(name=name, paused=paused.get(name, False), counts=counts.get(name, {}))
            for name in sorted(set(counts) | set(paused))
        ]

    # Reading ------------------------------------------------------------------------------

    async def get(self, job_id: uuid.UUID) -> JobRecord | None:
        rows = await self._run(lambda conn: self._query(conn, "get_job", id=str(job_id)))
        return _record(rows[0]) if rows else None

    async def list_jobs(
        self, filter: JobFilter, *, limit: int = 50, offset: int = 0
    ) -> list[JobRecord]:
        if limit <= 0:
            return []
        params = {
            "filter": _json(
                {
                    "status": filter.status.value if filter.status else None,
                    "job_type": filter.job_type,
                    "queue": filter.queue,
                    "idempotency_key": filter.idempotency_key,
                }
            ),
            "limit": limit,
            "offset": max(offset, 0),
        }
        rows = await self._run(lambda conn: self._query(conn, "list_jobs", **params))
        return [_record(row) for row in rows]

    async def count_by_status(self) -> dict[JobStatus, int]:
        rows = await self._run(lambda conn: self._query(conn, "count_by_status"))
        counts = dict.fromkeys(JobStatus, 0)
        for status, n in rows:
            counts[JobStatus(status)] = int(n)
        return counts

    async def attempts(self, job_id: uuid.UUID) -> list[AttemptRecord]:
        rows = await self._run(lambda conn: self._query(conn, "list_attempts", job_id=str(job_id)))
        return [
            AttemptRecord(
                job_id=_uuid(row[0]),
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

    async def purge_expired(self, limit: int = 500) -> int:
        if limit <= 0:
            return 0
        now = _ts(self.clock.now())
        return int(
            await self._run(lambda conn: self._scalar(conn, "purge_expired", now=now, limit=limit))
        )

    # Beat: recurring definitions and the leader's heartbeat -------------------------------

    async def upsert_recurring(self, specs: Sequence[RecurringSpec]) -> None:
        if not specs:
            return
        params = {
            "specs": _json(
                [
                    {
                        "name": spec.name,
                        "job_type": spec.job_type,
                        "cron": spec.cron,
                        "timezone": spec.timezone,
                        "args": spec.args.decode("utf-8"),
                    }
                    for spec in specs
                ]
            ),
            "now": _ts(self.clock.now()),
        }
        await self._run(lambda conn: self._query(conn, "upsert_recurring", **params))

    async def list_recurring(self) -> list[RecurringJob]:
        rows = await self._run(lambda conn: self._query(conn, "list_recurring"))
        return [
            RecurringJob(
                name=row[0],
                job_type=row[1],
                cron=row[2],
                timezone=row[3],
                args=_bytes(row[4]),
                enabled=bool(row[5]),
                last_fire_at=None if row[6] is None else _dt_required(row[6]),
                next_fire_at=None if row[7] is None else _dt_required(row[7]),
                updated_at=_dt_required(row[8]),
            )
            for row in rows
        ]

    async def set_recurring_enabled(self, name: str, enabled: bool) -> bool:
        params = {"recurring_name": name, "enabled": enabled, "now": _ts(self.clock.now())}
        changed = await self._run(
            lambda conn: self._scalar(conn, "set_recurring_enabled", **params)
        )
        return int(changed) == 1

    async def fire_recurring(
        self, name: str, instant: datetime, next_fire_at: datetime, job: NewJob
    ) -> EnqueueResult | None:
        params = {
            "recurring_name": name,
            "instant": _ts(instant),
            "next_fire_at": _ts(next_fire_at),
            "job": _json(_job_fields(job)),
        }
        fired, created, job_id = (
            await self._run(lambda conn: self._query(conn, "fire_recurring", **params), retry=False)
        )[0]
        if not fired:
            return None
        return EnqueueResult(_uuid(job_id), created=bool(created))

    async def advance_recurring(self, name: str, next_fire_at: datetime) -> None:
        params = {"recurring_name": name, "next_fire_at": _ts(next_fire_at)}
        await self._run(lambda conn: self._query(conn, "advance_recurring", **params))

    async def record_beat_leader(self, name: str, term: LeaseTerm, expires_at: datetime) -> None:
        params = {
            "lease_name": name,
            "holder": term.holder,
            "mechanism": term.mechanism,
            "token": term.token,
            "since": _ts(term.since),
            "now": _ts(self.clock.now()),
            "expires_at": _ts(expires_at),
        }
        await self._run(lambda conn: self._query(conn, "record_beat_leader", **params))

    async def clear_beat_leader(self, name: str, token: str) -> None:
        params = {"lease_name": name, "token": token}
        await self._run(lambda conn: self._query(conn, "clear_beat_leader", **params))

    async def beat_leader(self, name: str = BEAT_LEASE) -> BeatLeader | None:
        params = {"lease_name": name, "now": _ts(self.clock.now())}
        rows = await self._run(lambda conn: self._query(conn, "beat_leader", **params))
        if not rows:
            return None
        holder, mechanism, token, since, renewed_at, expires_at = rows[0]
        return BeatLeader(
            holder=holder,
            mechanism=mechanism,
            token=token,
            since=_dt_required(since),
            renewed_at=_dt_required(renewed_at),
            expires_at=_dt_required(expires_at),
        )


# Outcomes that end a job (and settle its continuations), as the other backends have them.


def _lifecycle(row: Sequence[Any], now: datetime) -> JobEvent:
    """The lifecycle event of an applied outcome, from its row of the `complete` statement."""
    job_id, status, attempt, seq, error, run_at = row
    return lifecycle_event(
        _uuid(job_id),
        int(seq),
        now,
        JobStatus(status),
        attempt,
        error,
        _dt_required(run_at) if status == JobStatus.FAILED else None,
    )


def _event_row(event: JobEvent, transient: bool) -> dict[str, object]:
    return {
        "job_id": str(event.job_id),
        "seq": event.seq,
        "kind": event.kind.value,
        "occurred_at": _ts(event.occurred_at),
        "payload": bytes(event.payload).decode("utf-8"),
        "transient": int(transient),
    }


def _optional_id(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


def _record(row: Sequence[Any]) -> JobRecord:
    return job_record(row, to_uuid=_uuid, to_time=_dt_required, to_bytes=_bytes)
