"""The SQL Server backend's ODBC plumbing for real, where no SQL Server can be reached: the
connection module (`jobworker.storage.sqlserver.connection`) against the local PostgreSQL through
Debian's psqlODBC driver and the real pyodbc, with PostgreSQL's driver profile
(tests/sqlserver.py). Each test module run makes its own database and drops it.

What is shown here: one connection on one thread of its own, connection errors as configuration
errors, every Python type the driver binds, transactions and rollback, a deadlock victim run
again, and a connection the server ended replaced. The T-SQL itself is for the conformance suite
on a real server (JOBWORKER_TEST_SQLSERVER_DSN) and the T-SQL grammar (test_sqlserver_tsql.py).
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime

import pyodbc
import pytest

from jobworker.errors import ConfigurationError
from jobworker.storage.sqlserver.connection import SQLSERVER, Database, Session
from jobworker.storage.sqlserver.url import odbc_connection_string
from jobworker.storage.sqlserver.values import VALUES, to_uuid, ts

from .pg import temporary_database
from .sqlserver import POSTGRES_ODBC, PSQLODBC_DRIVER, psqlodbc_url


@pytest.fixture(scope="module")
def odbc_database() -> Iterator[str]:
    """The name of a fresh PostgreSQL database, dropped after the module's tests."""
    assert PSQLODBC_DRIVER in pyodbc.drivers(), (
        f"the ODBC driver {PSQLODBC_DRIVER!r} is not installed: apt-get install odbc-postgresql "
        "unixodbc (.ci/run does)"
    )
    with temporary_database() as url:
        yield url.rpartition("/")[2]


def connect(database: str, *, name: str = "jw-odbc-test", port: int = 5432) -> Database:
    return Database(
        odbc_connection_string(psqlodbc_url(database, port)),
        profile=POSTGRES_ODBC,
        where=f"127.0.0.1:{port}/{database}",
        connect_timeout=5,
        thread_name=name,
    )


@pytest.fixture
async def db(odbc_database: str) -> AsyncIterator[Database]:
    database = connect(odbc_database)
    await database.open()
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
async def admin(odbc_database: str) -> AsyncIterator[Database]:
    """A second connection, to look at (and end) the first one's server session."""
    database = connect(odbc_database, name="jw-odbc-admin")
    try:
        yield database
    finally:
        await database.close()


def backend_pid(session: Session) -> int:
    [(pid,)] = session.rows("SELECT pg_backend_pid()")
    return int(pid)


async def table(db: Database, ddl: str) -> str:
    name = f"t_{uuid.uuid4().hex[:8]}"
    await db.run(lambda s: s.execute(f"CREATE TABLE {name} ({ddl})"))
    return name


async def session_ended(admin: Database, pid: int) -> bool:
    """Whether the server session `pid` is gone, waiting up to 5 s for it to go."""
    for _ in range(100):
        [(alive,)] = await admin.run(
            lambda s: s.rows("SELECT count(*) FROM pg_stat_activity WHERE pid = ?", pid)
        )
        if alive == 0:
            return True
        await asyncio.sleep(0.05)
    return False


async def test_one_connection_on_one_thread_of_its_own(db: Database, admin: Database) -> None:
    def where(session: Session) -> tuple[int, str]:
        return backend_pid(session), threading.current_thread().name

    seen = await asyncio.gather(*(db.run(where) for _ in range(20)))
    assert len(set(seen)) == 1, "every call, even concurrent ones, on the one connection"
    pid, thread = seen[0]
    assert thread.startswith("jw-odbc-test") and thread != threading.current_thread().name
    assert db.connected
    [(zone,)] = await db.run(lambda s: s.rows("SHOW TIME ZONE"))
    assert zone == "UTC", "the profile's session set-up ran on connecting"

    await db.close()
    assert not db.connected
    assert await session_ended(admin, pid), "closing ends the server session (no pooling)"
    assert await db.run(backend_pid) != pid, "used again after close: a new connection"


async def test_a_server_that_cannot_be_reached_is_a_configuration_error(
    odbc_database: str,
) -> None:
    nowhere = connect(odbc_database, port=1)
    with pytest.raises(ConfigurationError, match=r"cannot connect to PostgreSQL through psqlODBC"):
        await nowhere.open()
    await nowhere.close()

    # SQL Server's session set-up is T-SQL: PostgreSQL refuses it, and the connection is closed.
    wrong = Database(
        odbc_connection_string(psqlodbc_url(odbc_database)),
        profile=SQLSERVER,
        where="the wrong engine",
        connect_timeout=5,
        thread_name="jw-odbc-wrong",
    )
    with pytest.raises(ConfigurationError, match=r"SQL Server at the wrong engine: .*syntax error"):
        await wrong.open()
    assert not wrong.connected
    await wrong.close()


async def test_every_type_the_driver_binds_round_trips(db: Database) -> None:
    name = await table(
        db,
        "id uuid, at timestamp(6), data bytea, note text, big bigint, small int, ratio float8, "
        "flag boolean",
    )
    job_id = uuid.uuid4()
    at = datetime(2030, 1, 2, 3, 4, 5, 123456)  # naive UTC, as the backend reads datetime2(6)
    note = "é漢字 ü " + "ß" * 100_000  # non-ASCII, and longer than any fixed-size parameter
    values = (job_id, at, b"\x00\xffbytes", note, 2**40, -7, 0.1 + 0.2, True)
    insert = f"INSERT INTO {name} VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    await db.run(lambda s: s.rows(insert, *values))
    await db.run(lambda s: s.rows(insert, *([None] * len(values))))
    rows = await db.run(lambda s: s.rows(f"SELECT * FROM {name} ORDER BY id NULLS LAST"))
    stored, empty = (tuple(row) for row in rows)
    assert to_uuid(stored[0]) == job_id, "uuid (pyodbc reads it back as text)"
    assert stored[1:] == values[1:]
    assert VALUES.to_time(stored[1]) == at.replace(tzinfo=UTC), "all six fractional digits"
    assert empty == (None,) * len(values)


async def test_the_backends_own_parameters_round_trip(db: Database) -> None:
    """What the statements really receive: times as ISO text, batches as JSON text, flags."""
    at = datetime(2030, 1, 2, 3, 4, 5, 7, tzinfo=UTC)
    payload = '[{"label": "é漢", "n": 1}]'
    [(when, label, ttl, flag, limit)] = await db.run(
        lambda s: s.rows(
            "SELECT CAST(? AS timestamp(6)), CAST(? AS jsonb) -> 0 ->> 'label', "
            "CAST(? AS float8), CAST(? AS boolean), CAST(? AS int)",
            ts(at),
            payload,
            86400.5,
            False,
            500,
        )
    )
    assert VALUES.to_time(when) == at
    assert (label, ttl, flag, limit) == ("é漢", 86400.5, False, 500)


async def test_every_result_set_of_a_batch_is_read(db: Database) -> None:
    """What a statement that answers its status changes after its own answer relies on: every
    result set, in order, an empty one included; statements without one are skipped."""
    name = await table(db, "n int")
    sets = await db.run(
        lambda s: s.result_sets(
            f"INSERT INTO {name} VALUES (?); SELECT n, 'a' FROM {name}; "
            f"SELECT n FROM {name} WHERE n < 0; SELECT count(*) FROM {name}",
            7,
        )
    )
    assert [[tuple(row) for row in rows] for rows in sets] == [[(7, "a")], [], [(1,)]]
    assert await db.run(lambda s: s.result_sets(f"DELETE FROM {name}")) == []


async def test_a_transaction_commits_or_rolls_back_whole(db: Database, admin: Database) -> None:
    name = await table(db, "n int PRIMARY KEY")

    def insert(*numbers: int) -> Callable[[Session], None]:
        def run(session: Session) -> None:
            with session.transaction():
                for n in numbers:
                    session.rows(f"INSERT INTO {name} VALUES (?)", n)

        return run

    async def stored() -> list[int]:
        rows = await admin.run(lambda s: s.rows(f"SELECT n FROM {name} ORDER BY n"))
        return [row[0] for row in rows]

    await db.run(insert(1, 2))
    assert await stored() == [1, 2]

    def fails_in_python(session: Session) -> None:
        with session.transaction():
            session.rows(f"INSERT INTO {name} VALUES (?)", 3)
            raise LookupError("the caller's own error")

    with pytest.raises(LookupError):
        await db.run(fails_in_python)
    with pytest.raises(db.IntegrityError):  # 4 is stored, then 1 is a duplicate
        await db.run(insert(4, 1))
    assert await stored() == [1, 2], "nothing of either transaction stayed"
    await db.run(insert(5))
    assert await stored() == [1, 2, 5], "the connection is usable after both"


async def test_errors_are_the_drivers_and_leave_the_connection_usable(db: Database) -> None:
    with pytest.raises(db.Error) as info:
        await db.run(lambda s: s.rows("SELECT 1 / 0"))
    error = info.value
    assert isinstance(error, pyodbc.DataError) and error.args[0] == "22012"
    assert not POSTGRES_ODBC.is_deadlock(error) and not POSTGRES_ODBC.is_connection_lost(error)
    assert not SQLSERVER.is_deadlock(error) and not SQLSERVER.is_connection_lost(error)
    [(two,)] = await db.run(lambda s: s.rows("SELECT 2"))
    assert two == 2


async def test_a_connection_the_server_ended_is_replaced(db: Database, admin: Database) -> None:
    async def terminate(pid: int) -> None:
        await admin.run(lambda s: s.rows("SELECT pg_terminate_backend(?)", pid))
        assert await session_ended(admin, pid)

    first = await db.run(backend_pid)
    await terminate(first)
    second = await db.run(backend_pid)  # safe to repeat: run again on a new connection
    assert second != first

    await terminate(second)
    with pytest.raises(db.Error) as info:
        await db.run(backend_pid, retry=False)  # not safe to repeat: the error is the caller's
    assert POSTGRES_ODBC.is_connection_lost(info.value)
    assert not db.connected
    third = await db.run(backend_pid)
    assert third not in (first, second)


async def test_a_deadlock_victim_runs_again(odbc_database: str) -> None:
    """Two connections lock two rows in opposite orders; the server ends one transaction as the
    deadlock victim (40P01), which runs again once the other has committed."""
    one, two = (
        connect(odbc_database, name="jw-odbc-one"),
        connect(odbc_database, name="jw-odbc-two"),
    )
    name = await table(one, "id int PRIMARY KEY, v int NOT NULL")
    await one.run(lambda s: s.rows(f"INSERT INTO {name} VALUES (1, 0), (2, 0)"))
    runs = {"one": 0, "two": 0}
    both_hold_a_row = threading.Barrier(2, timeout=10)

    def bump(who: str, first: int, second: int) -> Callable[[Session], None]:
        def run(session: Session) -> None:
            runs[who] += 1
            with session.transaction():
                session.rows(f"UPDATE {name} SET v = v + 1 WHERE id = ?", first)
                if runs[who] == 1:
                    both_hold_a_row.wait()
                session.rows(f"UPDATE {name} SET v = v + 1 WHERE id = ?", second)

        return run

    try:
        await asyncio.gather(
            one.run(bump("one", 1, 2)),
            two.run(bump("two", 2, 1)),
        )
        rows = await one.run(lambda s: s.rows(f"SELECT v FROM {name} ORDER BY id"))
        assert [row[0] for row in rows] == [2, 2], "both transactions committed, once each"
        assert sorted(runs.values()) == [1, 2], "the victim ran twice"
    finally:
        await one.close()
        await two.close()
