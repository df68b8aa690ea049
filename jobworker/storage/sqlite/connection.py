"""The database file and the one connection a process keeps to it.

The connection lives on one dedicated thread (`ConnectionThread`), so the event loop never blocks
on the database lock; several processes share the file and SQLite serialises their writes. The
role classes see two things: `Database`, whose `read`, `write` and `snapshot` run a function on
that thread (a write inside a `BEGIN IMMEDIATE` transaction, which the writes waiting together
share: see `group_commit`; a snapshot inside one read transaction), and the `Session` such a
function receives, which runs the named statements of `sql/sqlite/queries.sql`.
"""

from __future__ import annotations

import fcntl
import functools
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from jobworker.config import Settings
from jobworker.display import redact_url
from jobworker.errors import ConfigurationError
from jobworker.storage.sqlfiles import queries
from jobworker.storage.sqlite.group_commit import WriteGroups
from jobworker.storage.threaded import ConnectionThread

__all__ = ["Database", "Params", "Row", "Session", "sqlite_path"]

T = TypeVar("T")
Params = Mapping[str, Any]
Row = tuple[Any, ...]
logger = logging.getLogger("jobworker.storage.sqlite")

_LOCK_RETRIES = 20


def sqlite_path(url: str) -> str:
    """`sqlite:///relative.db` or `sqlite:////absolute.db`."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise ConfigurationError(
            f"bad SQLite URL {redact_url(url)!r}: expected sqlite:///relative/path.db or sqlite:////abs/path.db"
        )
    path = url[len(prefix) :].split("?", 1)[0]
    if not path:
        raise ConfigurationError(f"bad SQLite URL {redact_url(url)!r}: no file name")
    if path == ":memory:" or path.startswith("file::memory:"):
        raise ConfigurationError(
            "an in-memory SQLite database cannot be shared by workers and clients; use a file"
        )
    return path


def _with_lock_retry(action: Callable[[], T]) -> T:
    """`action()`, tried again while another process holds the lock past the busy timeout."""
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


class Session:
    """The open connection, on its thread: the named statements, scripts and transactions."""

    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self._conn = conn
        self._sql = queries("sqlite")
        self.path = path

    def execute(self, name: str, params: Params | Sequence[Any] = ()) -> int:
        """The statement; the rows it changed. Its cursor is closed here, on the connection's
        thread: a cursor handed to another thread resets its statement there when it is freed."""
        cursor = self._conn.execute(self._sql[name], params)
        try:
            return cursor.rowcount
        finally:
            cursor.close()

    def execute_many(self, name: str, rows: Iterable[Params]) -> None:
        """The statement once per row. Not `executemany`: with other processes writing the file,
        it raised "bad parameter or other API misuse" mid-batch (Python 3.11, SQLite 3.40; cause
        not found), where one `execute` per row does not."""
        statement = self._sql[name]
        for row in rows:
            self._conn.execute(statement, row)

    def one(self, name: str, params: Params | Sequence[Any] = ()) -> Row | None:
        """The statement's first row, or None."""
        row: Row | None = self._conn.execute(self._sql[name], params).fetchone()
        return row

    def all(self, name: str, params: Params | Sequence[Any] = ()) -> list[Row]:
        return self._conn.execute(self._sql[name], params).fetchall()

    def scalar(self, name: str, params: Params | Sequence[Any] = ()) -> Any:
        """The first value of the statement's first row (a statement that returns one)."""
        return self._conn.execute(self._sql[name], params).fetchone()[0]

    def script(self, text: str) -> None:
        """Run a schema script (it commits what it does itself)."""
        _with_lock_retry(functools.partial(self._conn.executescript, text))

    @contextmanager
    def migration_lock(self) -> Iterator[None]:
        """Held while the schema changes: scripts that alter tables cannot run twice, so processes
        that start together take turns (each reads the version again once it holds the lock)."""
        with open(self.path + ".migrate.lock", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A write transaction; `BEGIN IMMEDIATE` takes the write lock up front (no upgrade
        deadlocks), and a lock held past the busy timeout is retried rather than raised."""
        _with_lock_retry(lambda: self._conn.execute("BEGIN IMMEDIATE"))
        try:
            yield
        except BaseException:
            if self._conn.in_transaction:  # some errors make SQLite roll back by itself
                self._conn.execute("ROLLBACK")
            raise
        else:
            _with_lock_retry(lambda: self._conn.execute("COMMIT"))

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A savepoint inside the write transaction: the block's writes are undone, and the
        transaction goes on, if it raises. If undoing them fails, the whole transaction is."""
        self._conn.execute("SAVEPOINT jobworker_call")
        try:
            yield
        except BaseException:
            if self._conn.in_transaction:
                try:
                    self._conn.execute("ROLLBACK TO jobworker_call")
                    self._conn.execute("RELEASE jobworker_call")
                except BaseException:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    raise
            raise
        self._conn.execute("RELEASE jobworker_call")

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """A read transaction: the statements inside see the database as of the first one, even
        while other processes write (each statement outside one sees its own moment)."""
        self._conn.execute("BEGIN")
        try:
            yield
        finally:
            self._conn.execute("COMMIT")

    def configure(self, settings: Settings) -> None:
        """WAL (readers never wait for the writer) and the durability asked for."""
        _with_lock_retry(lambda: self._conn.execute("PRAGMA journal_mode = WAL"))
        self._conn.execute(f"PRAGMA synchronous = {settings.sqlite_synchronous.upper()}")

    def close(self) -> None:
        self._conn.close()


class Database:
    """One process's connection to the file, opened on first use. `prepare(session)` runs once
    per connection before anything else (the schema's check and upgrade): it sees the file as
    it was, and nothing has been written to it yet."""

    def __init__(self, path: str, settings: Settings, prepare: Callable[[Session], object]) -> None:
        self.path = path
        self._settings = settings
        self._prepare = prepare
        self._thread = ConnectionThread(self._connect, Session.close, "jobworker-sqlite")
        self._writes = WriteGroups(self._thread)

    def _connect(self) -> Session:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        timeout = self._settings.sqlite_busy_timeout
        conn = sqlite3.connect(
            self.path, timeout=timeout, isolation_level=None, check_same_thread=False
        )
        session = Session(conn, self.path)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            self._prepare(session)
            session.configure(self._settings)
        except BaseException:
            conn.close()
            raise
        return session

    async def open(self) -> None:
        await self._thread.run(lambda session: None)

    async def close(self) -> None:
        await self._thread.close()

    async def database_now(self) -> datetime:
        """The host's time as SQLite reads it (what every process on the file shares)."""
        seconds = await self.read(lambda session: session.scalar("database_now"))
        return datetime.fromtimestamp(float(seconds), UTC)

    async def read(self, fn: Callable[[Session], T]) -> T:
        """`fn(session)` on the connection's thread; each statement is its own transaction."""
        return await self._thread.run(fn)

    async def write(self, fn: Callable[[Session], T]) -> T:
        """`fn(session)` inside a write transaction, its writes rolled back if it raises; the
        calls waiting together share one transaction (`group_commit`), each in its savepoint."""
        return await self._writes.run(fn)

    @property
    def commits(self) -> tuple[int, int]:
        """The write transactions this connection has committed, and the `write` calls they
        committed (for tests and benchmarks: calls over transactions is the grouping)."""
        return self._writes.commits, self._writes.committed_calls

    async def snapshot(self, fn: Callable[[Session], T]) -> T:
        """`fn(session)` inside one read transaction: its statements see one moment."""

        def in_snapshot(session: Session) -> T:
            with session.snapshot():
                return fn(session)

        return await self._thread.run(in_snapshot)
