"""SQL Server for tests: a schema per test in the database of JOBWORKER_TEST_SQLSERVER_DSN (a
`mssql+pyodbc://` URL), dropped with everything in it afterwards. Read at import: the suite's
autouse fixture clears every JOBWORKER_* variable before each test.

Where no SQL Server can be reached, the backend's ODBC plumbing runs against PostgreSQL through
Debian's psqlODBC driver, with the driver profile below.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote_plus

from jobworker.storage.sqlserver.connection import DriverProfile

DSN = os.environ.get("JOBWORKER_TEST_SQLSERVER_DSN") or None

# PostgreSQL as psqlODBC reports it. A connection ended by the server (pg_terminate_backend)
# first fails with 57P01 (admin shutdown), then with 08S01; a deadlock victim gets 40P01.
POSTGRES_ODBC = DriverProfile(
    name="PostgreSQL through psqlODBC",
    session_setup=("SET TIME ZONE 'UTC'",),
    begin="BEGIN",
    commit="COMMIT",
    rollback="ROLLBACK",
    deadlock_states=frozenset({"40P01", "40001"}),
    lost_states=frozenset({"57P01", "57P02", "57P03"}),
)
PSQLODBC_DRIVER = "PostgreSQL Unicode"  # Debian's odbc-postgresql, registered in odbcinst.ini


def psqlodbc_url(database: str, port: int = 5432) -> str:
    """A `mssql+pyodbc:///?odbc_connect=` URL that reaches PostgreSQL on loopback via psqlODBC."""
    odbc = (
        f"DRIVER={{{PSQLODBC_DRIVER}}};SERVER=127.0.0.1;PORT={port};DATABASE={database};"
        # Booleans as SQL_BIT (read back as bool, as SQL Server's bit is), not as '1' / '0'.
        "UID=postgres;BoolsAsChar=0"
    )
    return "mssql+pyodbc:///?odbc_connect=" + quote_plus(odbc)


# sys.objects types, dropped in this order (views and routines before the tables they use).
_DROPS = [
    ("V", "VIEW"),
    ("P", "PROCEDURE"),
    ("FN", "FUNCTION"),
    ("IF", "FUNCTION"),
    ("TF", "FUNCTION"),
    ("SN", "SYNONYM"),
    ("U", "TABLE"),
    ("SO", "SEQUENCE"),
]


def new_schema_name() -> str:
    return f"jw_{uuid.uuid4().hex[:12]}"


def _bracket(name: str) -> str:
    return "[" + name.replace("]", "]]") + "]"


def drop_schema(dsn: str, schema: str) -> None:
    """Drop every object of `schema`, then the schema itself (a no-op if it does not exist)."""
    import pyodbc

    from jobworker.storage.sqlserver import odbc_connection_string

    conn = pyodbc.connect(odbc_connection_string(dsn), autocommit=True)
    try:
        cursor = conn.cursor()
        objects = cursor.execute(
            "SELECT o.name, RTRIM(o.type) FROM sys.objects AS o "
            "JOIN sys.schemas AS s ON s.schema_id = o.schema_id "
            "WHERE s.name = ? AND o.parent_object_id = 0",
            schema,
        ).fetchall()
        for kind, keyword in _DROPS:
            for name, object_type in objects:
                if object_type == kind:
                    cursor.execute(f"DROP {keyword} {_bracket(schema)}.{_bracket(name)}")
        if cursor.execute("SELECT SCHEMA_ID(?)", schema).fetchone()[0] is not None:
            cursor.execute(f"DROP SCHEMA {_bracket(schema)}")
    finally:
        conn.close()


@contextmanager
def temporary_schema(dsn: str) -> Iterator[str]:
    """A fresh schema name (nothing exists under it yet: `migrate` creates it), dropped after."""
    schema = new_schema_name()
    drop_schema(dsn, schema)
    try:
        yield schema
    finally:
        drop_schema(dsn, schema)
