"""The PostgreSQL backend's connection to its database, the one thing its roles share: an
asyncpg pool with jobworker's codecs, the named statements rendered for one schema, running them
(a connection lost under a statement is retried once where the statement is safe to repeat),
dedicated connections for LISTEN and leases, and how asyncpg's values become Python's."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

from jobworker.config import Settings
from jobworker.display import redact_url
from jobworker.errors import ConfigurationError, DatabaseUnreachableError, MissingExtraError
from jobworker.storage.postgres.statements import load
from jobworker.storage.rows import Values

try:
    import asyncpg
except ImportError:  # pragma: no cover - exercised only without the extra
    asyncpg = None
    CONNECTION_LOST: tuple[type[BaseException], ...] = ()
    _UNREACHABLE: tuple[type[BaseException], ...] = ()
else:
    # A connection that died under a statement: the server restarted, an admin terminated it.
    CONNECTION_LOST = (
        OSError,
        asyncpg.InterfaceError,
        asyncpg.InternalClientError,
        asyncpg.PostgresConnectionError,
        asyncpg.CannotConnectNowError,
        asyncpg.AdminShutdownError,
    )
    # Connecting failed, but the address and credentials may be right: nothing listens there
    # now, it does not answer in time, or the server is starting, stopping or full.
    _UNREACHABLE = (
        OSError,
        TimeoutError,
        asyncpg.CannotConnectNowError,
        asyncpg.TooManyConnectionsError,
    )

__all__ = [
    "CONNECTION_LOST",
    "VALUES",
    "Database",
    "affected_rows",
    "plain_uuid",
    "require_driver",
    "server_settings",
]

logger = logging.getLogger("jobworker.storage.postgres")

T = TypeVar("T")


def require_driver() -> None:
    if asyncpg is None:
        raise MissingExtraError("asyncpg", "postgres")


def plain_uuid(value: Any) -> uuid.UUID:
    """asyncpg returns its own uuid.UUID subclass; callers get plain UUIDs."""
    return value if type(value) is uuid.UUID else uuid.UUID(bytes=value.bytes)


# asyncpg already returns aware datetimes and (with our codec) jsonb as bytes.
VALUES = Values(to_uuid=plain_uuid)


def affected_rows(status: str) -> int:
    """Rows affected, from a command tag such as 'UPDATE 3' or 'INSERT 0 3'."""
    try:
        return int(status.rsplit(" ", 1)[-1])
    except (ValueError, AttributeError):
        return 0


def server_settings(url: str, application_name: str | None) -> dict[str, str] | None:
    """The session settings each connection asks for: `application_name` (what
    pg_stat_activity shows), unless the URL gives its own, which asyncpg passes on itself."""
    if application_name is None:
        return None
    given = {key for key, _ in parse_qsl(urlsplit(url).query, keep_blank_values=True)}
    return None if "application_name" in given else {"application_name": application_name}


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


class Database:
    """One schema of one PostgreSQL database, through a pool opened by `open`."""

    def __init__(self, url: str, settings: Settings, application_name: str | None = None) -> None:
        require_driver()
        self.url = url
        self._server_settings = server_settings(url, application_name)
        self.schema = settings.database_schema
        self.jobs_channel = f"jobworker:{self.schema}"
        self.events_channel = f"jobworker-events:{self.schema}"
        self._pool_size = settings.pool_size
        self._connect_timeout = settings.connect_timeout
        self._statements = load(self.schema)
        self._pool: Any = None

    async def open(self) -> None:
        if self._pool is not None:
            return
        # min_size=0: the pool keeps no floor of connections to restore, so an outage costs
        # failed queries (which their callers retry), not a stream of reconnect tracebacks.
        pool = asyncpg.create_pool(
            self.url,
            min_size=0,
            max_size=self._pool_size,
            init=_init_connection,
            reset=_keep_session,
            timeout=self._connect_timeout,
            command_timeout=None,
            server_settings=self._server_settings,
        )
        try:
            await pool
            async with pool.acquire() as conn:
                await conn.execute("SELECT 1")
        except (OSError, ValueError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            await pool.close()
            unreachable = isinstance(exc, _UNREACHABLE)
            error = DatabaseUnreachableError if unreachable else ConfigurationError
            raise error(f"cannot connect to PostgreSQL at {redact_url(self.url)}: {exc}") from exc
        self._pool = pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), 10)
            except (TimeoutError, OSError, asyncpg.InterfaceError):
                pool.terminate()

    def acquire(self) -> Any:
        """A pooled connection, as `async with db.acquire() as conn`."""
        if self._pool is None:
            raise RuntimeError("PostgresStorage used before open()")
        return self._pool.acquire()

    async def connect(self) -> Any:
        """A dedicated connection outside the pool (LISTEN, a session's advisory lock)."""
        return await asyncpg.connect(
            self.url, timeout=self._connect_timeout, server_settings=self._server_settings
        )

    async def fetch(
        self, name: str, *args: Any, conn: Any = None, retry: bool = True, **named: Any
    ) -> list[Any]:
        """The rows of statement `name`, bound by position or by name (see statements.py), on
        `conn` if given, else on a pooled connection (retried once on a fresh one when the
        connection is lost, unless `retry` is false: a statement not safe to repeat)."""
        result: list[Any] = await self._run("fetch", name, args, named, conn, retry)
        return result

    async def fetchrow(
        self, name: str, *args: Any, conn: Any = None, retry: bool = True, **named: Any
    ) -> Any:
        return await self._run("fetchrow", name, args, named, conn, retry)

    async def fetchval(
        self, name: str, *args: Any, conn: Any = None, retry: bool = True, **named: Any
    ) -> Any:
        return await self._run("fetchval", name, args, named, conn, retry)

    async def execute(
        self, name: str, *args: Any, conn: Any = None, retry: bool = True, **named: Any
    ) -> int:
        """Run statement `name`; returns how many rows it affected."""
        return affected_rows(await self._run("execute", name, args, named, conn, retry))

    async def in_transaction(self, work: Callable[[Any], Awaitable[T]], *, retry: bool = True) -> T:
        """`work(conn)` in one transaction on a pooled connection; retried once on a fresh one
        when the connection is lost, unless `retry` is false (work not safe to repeat)."""
        for attempt in (1, 2):
            try:
                async with self.acquire() as conn, conn.transaction():
                    return await work(conn)
            except CONNECTION_LOST as exc:
                if not retry or attempt == 2:
                    raise
                logger.debug("a database connection was lost (%s); retrying on a fresh one", exc)
        raise AssertionError("unreachable")

    async def database_now(self) -> datetime:
        """The server's clock."""
        now: datetime = await self.fetchval("database_now")
        return now

    async def notify_events(self, job_ids: Sequence[uuid.UUID]) -> None:
        """Wake readers without Redis (LISTENing on the events channel) for these jobs."""
        if not job_ids:
            return
        payload = ",".join(str(job_id) for job_id in job_ids)
        await self.execute(
            "notify_events", self.events_channel, payload if len(payload) < 7000 else "*"
        )

    async def _run(
        self,
        method: str,
        name: str,
        args: Sequence[Any],
        named: dict[str, Any],
        conn: Any,
        retry: bool,
    ) -> Any:
        statement = self._statements[name]
        values = statement.bind(args, named)
        if conn is not None:
            return await getattr(conn, method)(statement.sql, *values)
        for attempt in (1, 2):
            try:
                async with self.acquire() as pooled:
                    return await getattr(pooled, method)(statement.sql, *values)
            except CONNECTION_LOST as exc:
                if not retry or attempt == 2:
                    raise
                logger.debug("a database connection was lost (%s); retrying on a fresh one", exc)
        raise AssertionError("unreachable")
