"""pyodbc, off the event loop: one connection on one thread, retried when the server chose it as
a deadlock victim or the connection was lost, and its errors told apart.

Nothing here is tied to SQL Server's SQL: what differs between ODBC drivers (the session's set-up,
how a transaction is begun and ended, which errors are deadlocks and lost connections) is a
`DriverProfile`, and the database is reached through any ODBC connection string. That is what
lets CI run this module against PostgreSQL through its ODBC driver (tests/test_sqlserver_odbc.py)
where no SQL Server can be reached.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from jobworker.errors import ConfigurationError, MissingExtraError
from jobworker.storage.threaded import ConnectionThread

__all__ = [
    "SQLSERVER",
    "Bindable",
    "Database",
    "DriverProfile",
    "Session",
    "import_pyodbc",
]

T = TypeVar("T")
logger = logging.getLogger("jobworker.storage.sqlserver")

_DEADLOCK_RETRIES = 5


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


@dataclass(frozen=True, slots=True, kw_only=True)
class DriverProfile:
    """What differs from one database's ODBC driver to another's."""

    name: str
    # Run on every new connection.
    session_setup: tuple[str, ...]
    begin: str
    commit: str
    # Ends the transaction an error left open; harmless when none is.
    rollback: str
    # A deadlock victim's transaction was rolled back whole: it is run again.
    deadlock_states: frozenset[str]
    deadlock_codes: tuple[int, ...] = ()
    # SQLSTATE classes and states of a connection that is gone: the next call reconnects.
    lost_state_classes: tuple[str, ...] = ("08",)
    lost_states: frozenset[str] = frozenset()

    def is_deadlock(self, exc: BaseException) -> bool:
        state = sqlstate(exc)
        return state in self.deadlock_states or any(
            f"({n})" in str(exc) for n in self.deadlock_codes
        )

    def is_connection_lost(self, exc: BaseException) -> bool:
        state = sqlstate(exc)
        return state in self.lost_states or state.startswith(self.lost_state_classes)


SQLSERVER = DriverProfile(
    name="SQL Server",
    # Any error rolls back the whole transaction, also in the migration's plain batches.
    session_setup=("SET XACT_ABORT ON;",),
    begin="BEGIN TRANSACTION;",
    commit="COMMIT TRANSACTION;",
    rollback="IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION;",
    deadlock_states=frozenset({"40001"}),
    deadlock_codes=(1205,),
)


def sqlstate(exc: BaseException) -> str:
    """The SQLSTATE pyodbc puts first in an error's arguments ("" if there is none)."""
    return exc.args[0] if exc.args and isinstance(exc.args[0], str) else ""


class Bindable(Protocol):
    """A statement whose parameters are bound by name (`statements.Statement`)."""

    @property
    def sql(self) -> str: ...

    def bind(self, values: Mapping[str, object]) -> list[object]: ...


class Session:
    """One open connection, in autocommit mode: what a function given to `Database.run` is
    handed, on the database's thread."""

    def __init__(self, conn: Any, profile: DriverProfile, error: type[Exception]) -> None:
        self._conn = conn
        self._profile = profile
        self._error = error
        self.usable = True

    def rows(self, sql: str, *values: object) -> list[Any]:
        """Run `sql` with positional parameters; its first result set (empty if none)."""
        cursor = self._conn.cursor()
        try:
            cursor.execute(sql, *values)
            return _result_rows(cursor)
        finally:
            cursor.close()

    def execute(self, sql: str) -> None:
        """A batch without parameters (sent as it is, not prepared), read to its end."""
        cursor = self._conn.cursor()
        try:
            cursor.execute(sql)
            _result_rows(cursor)
        finally:
            cursor.close()

    def query(self, statement: Bindable, params: Mapping[str, object]) -> list[Any]:
        return self.rows(statement.sql, *statement.bind(params))

    def result_sets(self, sql: str, *values: object) -> list[list[Any]]:
        """Run `sql` with positional parameters; every result set it answers, in order."""
        cursor = self._conn.cursor()
        try:
            cursor.execute(sql, *values)
            return _all_result_sets(cursor)
        finally:
            cursor.close()

    def query_sets(self, statement: Bindable, params: Mapping[str, object]) -> list[list[Any]]:
        return self.result_sets(statement.sql, *statement.bind(params))

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Statements run in between are one transaction: committed at the end, rolled back if
        anything raises."""
        self.execute(self._profile.begin)
        try:
            yield
        except BaseException:
            self.end_failed_transaction()
            raise
        self.execute(self._profile.commit)

    def end_failed_transaction(self) -> None:
        """Roll back what an error left open; a connection that cannot is closed (unusable)."""
        try:
            self.execute(self._profile.rollback)
        except self._error:
            self.close()

    def setup(self) -> None:
        for sql in self._profile.session_setup:
            self.execute(sql)

    def close(self) -> None:
        self.usable = False
        try:
            self._conn.close()
        except self._error as exc:
            logger.debug("closing a %s connection failed: %s", self._profile.name, exc)


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


def _all_result_sets(cursor: Any) -> list[list[Any]]:
    """Every result set of a batch, read to its end (statements without one are skipped)."""
    sets: list[list[Any]] = []
    while True:
        if cursor.description is not None:
            sets.append(cursor.fetchall())
        if not cursor.nextset():
            return sets


class Database:
    """One connection to the database at `connection_string`, used from one thread of its own.

    `run(fn)` calls `fn(session)` there. A deadlock victim's `fn` runs again (up to five
    times); after a lost connection the next call reconnects, and with `retry` (`fn` is safe to
    repeat) this one does too. The driver's errors are raised as they are; `Error` and
    `IntegrityError` are the driver's classes, for callers to catch.
    """

    def __init__(
        self,
        connection_string: str,
        *,
        profile: DriverProfile = SQLSERVER,
        where: str,
        connect_timeout: float,
        thread_name: str,
        driver: Any = None,
    ) -> None:
        self.driver = import_pyodbc() if driver is None else driver
        self.Error: type[Exception] = self.driver.Error
        self.IntegrityError: type[Exception] = self.driver.IntegrityError
        self.profile = profile
        self._connection_string = connection_string
        self._where = where
        self._timeout = max(1, round(connect_timeout))
        self._session: Session | None = None
        self._thread = ConnectionThread(self._connect, Session.close, thread_name)

    @property
    def connected(self) -> bool:
        """Whether a connection is open (it opens on the first `run`)."""
        return self._session is not None and self._session.usable

    async def open(self) -> None:
        """Connect now: a server that cannot be reached is a `ConfigurationError`."""
        try:
            await self.run(lambda session: None, retry=False)
        except self.Error as exc:
            raise ConfigurationError(
                f"cannot connect to {self.profile.name} at {self._where}: {exc}"
            ) from exc

    async def run(self, fn: Callable[[Session], T], *, retry: bool = True) -> T:
        """`fn(session)` on the database's thread. `retry`: `fn` is safe to repeat on a fresh
        connection when the first one was lost."""
        return await self._thread.run(lambda _session: self._attempts(fn, retry))

    async def close(self) -> None:
        """Close the connection and end the thread; a later `run` starts both anew."""
        await self._thread.close()
        self._session = None

    def _connect(self) -> Session:
        conn = self.driver.connect(self._connection_string, autocommit=True, timeout=self._timeout)
        session = Session(conn, self.profile, self.Error)
        try:
            session.setup()
        except BaseException:
            session.close()
            raise
        self._session = session
        return session

    def _attempts(self, fn: Callable[[Session], T], retry: bool) -> T:
        deadlocks = 0
        reconnected = False
        while True:
            session = self._thread.connection()
            try:
                return fn(session)
            except self.Error as exc:
                lost = self.profile.is_connection_lost(exc)
                if not lost:
                    session.end_failed_transaction()
                if lost or not session.usable:
                    self._thread.drop()
                if self.profile.is_deadlock(exc) and deadlocks < _DEADLOCK_RETRIES:
                    deadlocks += 1
                    logger.info("chosen as a deadlock victim; retrying (%d)", deadlocks)
                    time.sleep(min(0.02 * 2**deadlocks, 0.5))
                    continue
                if lost and retry and not reconnected:
                    reconnected = True
                    logger.debug(
                        "the %s connection was lost (%s); retrying", self.profile.name, exc
                    )
                    continue
                raise
