"""SQL Server storage over pyodbc, run off the event loop.

pyodbc blocks, so each storage owns one connection used from one dedicated thread
(`connection.py`). The connection is in autocommit mode: every named statement is one batch,
atomic on its own (a single statement, or an explicit transaction with XACT_ABORT ON). Claims lock
rows with `UPDLOCK, READPAST`; batches travel as one JSON document unpacked with OPENJSON. There
are no notifications: idle workers poll. The schema is the user's: `jobworker migrate` applies it.

A module per role (schema, jobs, control, inspection, events, maintenance, recurring,
leadership), each running the named statements of sql/sqlserver/queries.sql (`statements.py`,
`queries.py`); `writes.py` stores event rows, with the events of the status changes a statement
answers in its transaction; `url.py` turns URLs into ODBC connection strings, `lease.py` is
beat's app-lock lease, `values.py` converts values. This project's CI has no SQL Server engine:
the connection runs there against PostgreSQL through its ODBC driver, the T-SQL is parsed by a
T-SQL grammar, and the conformance suite runs against a server only when
JOBWORKER_TEST_SQLSERVER_DSN points at one (see docs/sqlserver.md).
"""

from jobworker.storage.sqlserver.statements import (
    parameter_names,
    quoted_schema,
    rendered_scripts,
    split_batches,
    statements,
)
from jobworker.storage.sqlserver.storage import SQLServerStorage
from jobworker.storage.sqlserver.url import odbc_connection_string, with_application_name

__all__ = [
    "SQLServerStorage",
    "odbc_connection_string",
    "parameter_names",
    "quoted_schema",
    "rendered_scripts",
    "split_batches",
    "statements",
    "with_application_name",
]
