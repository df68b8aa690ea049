"""The SQL Server backend without a SQL Server: URLs, schema names, the SQL files, the CLI, and
the backend's plumbing against a stand-in for pyodbc that records what it is asked to run.

What these tests cannot show is that SQL Server accepts and runs the T-SQL: the conformance suite
does that when JOBWORKER_TEST_SQLSERVER_DSN points at a server (see docs/sqlserver.md).
"""

from __future__ import annotations

import ast
import asyncio
import re
import sys
import types
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from click.testing import CliRunner

from jobworker import Settings
from jobworker.cli import main
from jobworker.clock import FrozenClock
from jobworker.errors import (
    ConfigurationError,
    InvalidJobStateError,
    JobNotFoundError,
    MissingExtraError,
    SchemaMissingError,
)
from jobworker.events.model import Lifecycle
from jobworker.models import (
    AttemptOutcome,
    CancelResult,
    Completion,
    EventKind,
    Failed,
    JobEvent,
    JobFilter,
    JobKind,
    JobStatus,
    NewJob,
    Released,
    Succeeded,
)
from jobworker.storage import DIALECTS, create_storage, schema_sql
from jobworker.storage.sqlfiles import queries, schema_scripts
from jobworker.storage.sqlserver import (
    SQLServerStorage,
    odbc_connection_string,
    parameter_names,
    quoted_schema,
    rendered_scripts,
    split_batches,
    statements,
    with_application_name,
)
from jobworker.storage.sqlserver.values import ts

from .conftest import ROOT

URL = "mssql+pyodbc://app:secret@db.example:1433/jobs?driver=ODBC+Driver+18+for+SQL+Server"
VERSIONS = [version for version, _, _ in schema_scripts("sqlserver")]
# The baseline's number: what the development scripts it replaced (001-005) left a database at.
BASELINE = 5
# Beat's statements, exercised in tests/test_beat_sqlserver_offline.py.
BEAT_STATEMENTS = {
    "upsert_recurring",
    "list_recurring",
    "set_recurring_enabled",
    "fire_recurring",
    "advance_recurring",
    "record_beat_leader",
    "clear_beat_leader",
    "beat_leader",
}
# The worker registry's, exercised in tests/test_workers_sqlserver_offline.py.
WORKER_STATEMENTS = {
    "register_worker",
    "worker_heartbeat",
    "live_worker_figures",
    "unregister_worker",
    "list_workers",
    "mark_workers_gone",
    "purge_gone_workers",
}
# The job-type catalogue's, exercised in tests/test_catalogue_sqlserver_offline.py.
CATALOGUE_STATEMENTS = {"upsert_job_types", "list_job_types"}
TABLES = (
    "jobs",
    "job_attempts",
    "job_events",
    "queue_state",
    "jobworker_schema",
    "recurring_jobs",
    "workers",
    "job_types",
)


def code_of(sql: str) -> str:
    return re.sub(r"--[^\n]*", "", sql)


# URLs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            URL + "&TrustServerCertificate=yes",
            "DRIVER={ODBC Driver 18 for SQL Server};SERVER=db.example,1433;DATABASE=jobs;"
            "UID=app;PWD=secret;TrustServerCertificate=yes",
        ),
        (  # no driver: ODBC Driver 18; no port: the driver's default
            "mssql+pyodbc://app:secret@db.example/jobs",
            "DRIVER={ODBC Driver 18 for SQL Server};SERVER=db.example;DATABASE=jobs;"
            "UID=app;PWD=secret",
        ),
        (  # credentials are URL-decoded, then braced when they hold ODBC's special characters
            "mssql://us%40er:p%3Bss%7Dword@host:1434/my%20db?driver=FreeTDS&Encrypt=yes",
            "DRIVER={FreeTDS};SERVER=host,1434;DATABASE=my db;UID=us@er;PWD={p;ss}}word};"
            "Encrypt=yes",
        ),
        (  # a named instance, and no credentials (integrated or Entra ID authentication)
            "mssql+pyodbc://sqlhost%5CSQLEXPRESS/jobs?Authentication=ActiveDirectoryMsi",
            "DRIVER={ODBC Driver 18 for SQL Server};SERVER=sqlhost\\SQLEXPRESS;DATABASE=jobs;"
            "Authentication=ActiveDirectoryMsi",
        ),
        (  # odbc_connect: used as it is, once decoded
            "mssql+pyodbc:///?odbc_connect=DRIVER%3D%7BODBC+Driver+18+for+SQL+Server%7D%3B"
            "SERVER%3Dtcp%3Adb%2C1433%3BDATABASE%3Djobs%3BUID%3Dapp%3BPWD%3Ds%3Bcret",
            "DRIVER={ODBC Driver 18 for SQL Server};SERVER=tcp:db,1433;DATABASE=jobs;UID=app;"
            "PWD=s;cret",
        ),
        ("mssql+pyodbc://?odbc_connect=DSN%3Djobs", "DSN=jobs"),
    ],
)
def test_urls_become_odbc_connection_strings(url: str, expected: str) -> None:
    assert odbc_connection_string(url) == expected


def test_connections_name_their_role_unless_the_url_names_one() -> None:
    named = with_application_name(odbc_connection_string(URL), "jobworker worker 2")
    assert named.endswith(";APP=jobworker worker 2")
    assert with_application_name("DSN=jobs;", "jobworker beat") == "DSN=jobs;APP=jobworker beat"
    given = odbc_connection_string(URL + "&APP=billing")
    assert with_application_name(given, "jobworker web") == given
    given = "DSN=jobs; app = billing"
    assert with_application_name(given, "jobworker web") == given


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://u:p@h/db", "expected mssql+pyodbc://"),
        ("mssql+pyodbc:/h/db", "expected mssql+pyodbc://"),
        ("mssql+pyodbc:///jobs", "no host"),
        ("mssql+pyodbc://u:p@host", "no database name"),
        ("mssql+pyodbc://u:p@host/", "no database name"),
        ("mssql+pyodbc://u:p@host/a/b", "contains '/'"),
        ("mssql+pyodbc://u:p@host:port/db", "the port is not a number"),
        ("mssql+pyodbc://u:p@host:99999/db", "the port is not a number"),
        ("mssql+pyodbc://u:p@host/db?driver=", "the driver parameter is empty"),
        ("mssql+pyodbc://u:p@host/db?Encrypt=yes&encrypt=no", "given twice"),
        ("mssql+pyodbc://u:p@host/db?bad;key=1", "not an ODBC keyword"),
        ("mssql+pyodbc://u:p@host/db?Database=other", "in the URL itself"),
        ("mssql+pyodbc://u:p@host/db?PWD=x", "in the URL itself"),
        ("mssql+pyodbc://u:p@host/db#frag", "fragment"),
        ("mssql+pyodbc://u:p@host/db?odbc_connect=DSN%3Dx", "give nothing else"),
        ("mssql+pyodbc:///?odbc_connect=DSN%3Dx&Encrypt=yes", "give nothing else"),
        ("mssql+pyodbc:///?odbc_connect=", "not an ODBC connection string"),
    ],
)
def test_bad_urls_are_configuration_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)) as info:
        odbc_connection_string(url)
    assert ":p@" not in str(info.value), "the password is never shown"


# Schema names -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["jobworker", "_jobs", "jw_0123456789ab", "a" * 63, "dbo"])
def test_plain_schema_names_are_bracket_quoted(name: str) -> None:
    assert quoted_schema(name) == f"[{name}]"


@pytest.mark.parametrize(
    "name", ["", "Jobs", "1jobs", "job-worker", "jobs]; DROP TABLE x; --", "a" * 64, "sys"]
)
def test_other_schema_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigurationError, match="invalid schema name"):
        quoted_schema(name)


# The SQL files ------------------------------------------------------------------------------


PACKAGE = ROOT / "jobworker" / "storage" / "sqlserver"
# Methods that take a statement's name, and the position of that argument: `Queries`' own, and
# the lease's helper that runs a statement on its own connection.
NAMED = {
    "rows": 0,
    "row": 0,
    "sets": 0,
    "scalar": 0,
    "fetch": 1,
    "fetch_sets": 1,
    "fetch_scalar": 1,
    "_on_own_connection": 0,
    "fetch_changing": 1,
    "apply_changing": 1,
    "run_changing": 0,
}
# Functions that pass on a name they were given.
FORWARDERS = {
    "rows",
    "row",
    "sets",
    "scalar",
    "fetch",
    "fetch_sets",
    "fetch_scalar",
    "_on_own_connection",
    "fetch_changing",
    "apply_changing",
    "run_changing",
}


def referenced_queries() -> set[str]:
    """Every statement name the backend's modules pass to a method that runs one."""
    names = set()
    for module in PACKAGE.glob("*.py"):
        if module.name == "connection.py":
            continue  # `Session.rows` runs SQL text, not a named statement
        for function in ast.walk(ast.parse(module.read_text())):
            if not isinstance(function, ast.AsyncFunctionDef | ast.FunctionDef):
                continue
            for node in ast.walk(function):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                    continue
                position = NAMED.get(node.func.attr)
                if position is None or function.name in FORWARDERS:
                    continue
                argument = node.args[position]
                assert isinstance(argument, ast.Constant), (module.name, ast.dump(node))
                names.add(argument.value)
    return names


def test_every_named_query_is_used_and_every_used_one_exists() -> None:
    assert referenced_queries() == set(queries("sqlserver"))


def test_each_statement_declares_its_parameters_once_each() -> None:
    for name, statement in statements("jobworker").items():
        code = code_of(statement.sql)
        assert code == statement.sql, f"{name}: comments are not sent"
        assert code.count("?") == len(statement.params), name
        assert not re.search(r"^\s*GO\s*$", code, re.MULTILINE | re.IGNORECASE), name
    assert statements("jobworker")["claim"].params[:4] == ("now", "queues", "job_types", "limit")
    with pytest.raises(ValueError, match="every marker must stand alone"):
        parameter_names("DECLARE @a int = ?;\nSELECT ? + @a;")


def test_no_string_literal_holds_a_comment_marker_or_a_parameter_marker() -> None:
    """What makes stripping comments (`--` to the end of the line) and counting `?` safe."""
    texts = [*queries("sqlserver").values(), *(t for _, _, t in schema_scripts("sqlserver"))]
    for text in texts:
        for literal in re.findall(r"N?'[^']*'", code_of(text)):
            assert "--" not in literal and "?" not in literal, literal


def test_tables_are_always_named_with_the_schema() -> None:
    bare = re.compile(r"(?<![\w@.\[])(" + "|".join(TABLES) + r")\b")
    texts = dict(queries("sqlserver"))
    texts.update({name: text for _, name, text in schema_scripts("sqlserver")})
    for name, text in texts.items():
        assert not bare.search(code_of(text)), (name, bare.search(code_of(text)))
        assert "__SCHEMA__" in text or name in ("migration_lock", "database_now"), name


def test_schema_scripts_split_on_go_into_batches() -> None:
    scripts = schema_scripts("sqlserver")
    versions = [version for version, _, _ in scripts]
    assert versions[0] == BASELINE and versions == sorted(set(versions))
    assert scripts[0][1] == "005_baseline.sql"
    for version, name, text in scripts:
        batches = split_batches(text)
        assert len(batches) > 1, name
        for batch in batches:
            code = code_of(batch).strip()
            assert code, f"{name}: a batch of only comments"
            assert not re.search(r"^\s*GO\s*$", batch, re.MULTILINE | re.IGNORECASE)
            # CREATE PROCEDURE / FUNCTION / TRIGGER must be the first statement of its batch.
            routine = r"(PROCEDURE|FUNCTION|TRIGGER)\b"
            if re.search(r"\bCREATE\s+(OR\s+ALTER\s+)?" + routine, code, re.I):
                assert re.match(r"CREATE\s+OR\s+ALTER\s+" + routine, code), batch
        last = code_of(batches[-1])
        assert f"VALUES ({version})" in last, f"{name} records its version last"
    assert split_batches("SELECT 1;\ngo\n-- only a comment\nGO -- trailing\n\tGo\nSELECT 2") == [
        "SELECT 1;",
        "SELECT 2",
    ]


def test_rendered_scripts_hold_the_quoted_schema() -> None:
    for _, _, text in rendered_scripts("acme_jobs"):
        assert "__SCHEMA__" not in text and "[acme_jobs]." in text
    with pytest.raises(ConfigurationError):
        rendered_scripts("Acme")


def set_clauses(sql: str) -> list[tuple[str, str]]:
    """(target, SET list) of every UPDATE in a statement or script."""
    pattern = re.compile(
        r"\bUPDATE\s+(?!\()([\w.\[\]]+)(?:\s+WITH\s*\([^)]*\))?\s+SET\b(.*?)(?=\bOUTPUT\b|\bFROM\b|\bWHERE\b|;)",
        re.DOTALL | re.IGNORECASE,
    )
    return [(m.group(1), m.group(2)) for m in pattern.finditer(code_of(sql))]


def latest_routine(name: str) -> str:
    """The text of the last schema script's CREATE OR ALTER of a routine: what runs now."""
    found = ""
    for _, _, text in schema_scripts("sqlserver"):
        for batch in split_batches(text):
            if re.match(
                rf"CREATE\s+OR\s+ALTER\s+\w+\s+__SCHEMA__\.{name}\b", code_of(batch).strip()
            ):
                found = batch
    assert found, name
    return found


def flat(sql: str) -> str:
    """Code without comments, its whitespace collapsed."""
    return " ".join(code_of(sql).split())


TRACE_CONTEXT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\nvendor=opaque"


def test_the_trace_context_goes_in_with_every_job_and_out_with_every_claim() -> None:
    """jobs.trace_context (version 10) is written by both statements that insert jobs, read
    from the JSON each sends, and returned by the claim, from both of its updates."""
    texts = {name: flat(text) for name, text in queries("sqlserver").items()}
    for name in ("enqueue", "fire_recurring"):
        inserts = re.findall(r"INSERT INTO __SCHEMA__\.jobs \(([^)]*)\)", texts[name])
        assert inserts and all("trace_context" in columns for columns in inserts), name
        assert "trace_context nvarchar(1024) '$.trace_context'" in texts[name], name
    claim = texts["claim"]
    # The walk of both kinds, the walk of one kind behind the other's backlog, capped types.
    assert claim.count("inserted.event_seq, inserted.trace_context INTO @claimed") == 3
    assert claim.count("j.event_seq, j.trace_context FROM __SCHEMA__.jobs") == 1  # capped types
    assert "run_at, event_seq, trace_context FROM @claimed" in claim


CHANGE_OUTPUT = (
    "OUTPUT inserted.id, inserted.event_seq, inserted.status, inserted.attempt, inserted.error, "
    "inserted.run_at INTO @"
)
CHANGE_ROWS = "SELECT c.id, c.event_seq, c.status, c.attempt, c.error, c.run_at FROM OPENJSON("


def test_every_status_change_numbers_its_lifecycle_event() -> None:
    """As on PostgreSQL: a statement that sets a job's status sets event_seq with it. The ends
    of attempts are recorded in their attempt rows; every other change is answered (id,
    event_seq, status, attempt, error, run_at) for the backend to store its event."""
    texts = dict(queries("sqlserver"))
    texts["settle_continuations"] = latest_routine("settle_continuations")
    changes = 0
    for name, text in texts.items():
        for target, assignments in set_clauses(text):
            if re.search(r"(^|[\s,])status\s*=", assignments):
                changes += 1
                assert re.search(r"\bevent_seq\s*=", assignments), (name, target)
    assert changes == 8  # claim (3 times), end_attempts, cancel, retry, promote, cancel
    claim = code_of(texts["claim"])
    assert claim.count("event_seq = event_seq + 1") == 3 and "inserted.event_seq" in claim
    ending = flat(texts["end_attempts"])
    # The greatest of event_seq, the attempt's floor and the job's stored events, then as many
    # numbers as the end takes (a success: its result event's too).
    assert (
        "event_seq = CASE WHEN j.event_seq >= e.seq_floor AND j.event_seq >= stored.seq "
        "THEN j.event_seq WHEN e.seq_floor >= stored.seq THEN e.seq_floor ELSE stored.seq END "
        "+ e.seq_step" in ending
    )
    assert "CROSS APPLY (SELECT COALESCE(MAX(s.seq), 0) AS seq FROM __SCHEMA__.job_events" in (
        ending
    )
    # The attempt's events are stored before the ends update the jobs.
    assert ending.index("INSERT INTO __SCHEMA__.job_events") < ending.index("UPDATE j")
    # Other changes answer what their events say.
    for name, updates in (("cancel", 1), ("retry_dead", 1), ("settle_continuations", 2)):
        assert flat(texts[name]).count(CHANGE_OUTPUT) == updates, name
    settling = [
        name for name, text in texts.items() if "EXEC __SCHEMA__.settle_continuations" in text
    ]
    assert sorted(settling) == [
        "cancel", "delete_job", "end_attempts", "enqueue", "resolve_continuations",
    ]  # fmt: skip
    for name in settling:
        code = flat(texts[name])
        assert "@changes = @settled OUTPUT" in code and CHANGE_ROWS in code, name
    assert "SET @changes = (SELECT id, event_seq, status, attempt, error, run_at FROM @changed" in (
        flat(texts["settle_continuations"])
    )


def test_no_statement_builds_an_event_or_reads_the_servers_clock() -> None:
    """Payloads are the backend's (`event_log`), and times its clock's: no statement, and no
    routine of the latest schema, builds one or calls SYSUTCDATETIME (only column defaults of
    bookkeeping tables do, and `database_now`, which is how the storage's clock reads it)."""
    texts = dict(queries("sqlserver"))
    assert code_of(texts.pop("database_now")).strip() == "SELECT SYSUTCDATETIME();"
    texts["settle_continuations"] = latest_routine("settle_continuations")
    for name, text in texts.items():
        code = code_of(text)
        assert "SYSUTCDATETIME" not in code and "GETDATE" not in code, name
        assert "INCLUDE_NULL_VALUES" not in code and "N'lifecycle'" not in code, name
    # The claim and the completion store no lifecycle event: they write no event row of their
    # own (the completion stores the attempt's events it is given, then records the end).
    assert "job_events" not in code_of(texts["claim"])
    assert code_of(texts["end_attempts"]).count("INSERT INTO __SCHEMA__.job_events") == 1


def test_no_statement_decides_an_attempts_end() -> None:
    """`attempt_ends` decides every end: `end_attempts` applies the way whose cancel_requested
    is the job's, fenced by the attempt's identity, and no CASE of any statement turns an
    outcome or a cancel request into a status, an error or an attempt count."""
    texts = dict(queries("sqlserver"))
    assert "complete" not in texts and "end_leases" not in texts
    ending = flat(texts["end_attempts"])
    assert (
        "JOIN @end AS e ON j.id = e.id AND j.lease_owner = e.owner AND j.attempt = e.attempt "
        "AND j.cancel_requested = e.cancel_requested" in ending
    )
    assert "WHERE j.status = N'running'" in ending
    # Its only literals: the fence's status, the effects on error and traceback, and the event
    # fence's lost attempt.
    assert set(re.findall(r"N'(\w*)'", ending)) == {"running", "set", "clear", "lost"}
    assert "status = e.status, attempt = j.attempt + e.attempt_change," in ending
    assert "run_at = COALESCE(e.run_at, j.run_at)" in ending
    assert "completed_at = CASE WHEN e.ends = 1 THEN @now ELSE j.completed_at END" in ending
    # The attempt row and the settled continuations are the applied way's (joined on its ord).
    assert ending.count("JOIN @end AS e ON e.ord = a.ord") == 2
    outcomes = {f"N'{outcome.value}'" for outcome in AttemptOutcome}
    for name, text in texts.items():
        for case in re.findall(r"\bCASE\b(?:(?!\bEND\b).)*\bEND\b", flat(text)):
            # throughput only reads attempt rows: it sorts their outcomes into what it counts.
            if name == "throughput":
                continue
            assert not any(literal in case for literal in outcomes) or name == "retry_dead", case
            assert "cancel_requested" not in case and "outcome" not in case, (name, case)
    locking = flat(texts["lock_leases"])
    assert (
        "WITH (READCOMMITTEDLOCK, UPDLOCK, READPAST, ROWLOCK)" in locking
        and "UPDATE" not in locking
    )


UNTRIGGERED = (
    "__SCHEMA__.queue_state",
    "__SCHEMA__.leader_leases",
    "__SCHEMA__.recurring_jobs",
    "__SCHEMA__.beat_leaders",
    "__SCHEMA__.workers",
)


def test_no_statement_counts_an_update_of_jobs_with_rowcount() -> None:
    """What an UPDATE of jobs changed is counted from its OUTPUT rows, never from @@ROWCOUNT
    (which a trigger on jobs, as the baseline's, would reset; version 6 drops it)."""
    texts = dict(queries("sqlserver"))
    texts["settle_continuations"] = latest_routine("settle_continuations")
    dml = re.compile(r"\b(UPDATE|INSERT|DELETE)\s+(?!\()")
    counted = 0
    for name, text in texts.items():
        code = code_of(text)
        for read in re.finditer("@@ROWCOUNT", code):
            [*_, last] = dml.finditer(code, 0, read.start())
            counted += 1
            if last.group(1) == "UPDATE":
                target = code[last.end() :].split(None, 1)[0]
                # Only jobs has a trigger; the other tables may be counted with @@ROWCOUNT.
                assert target in UNTRIGGERED, name
    assert counted >= 5


def test_the_lifecycle_trigger_writes_what_postgresql_writes() -> None:
    """The baseline's trigger (version 6 drops it: its rows stay readable)."""
    trigger = code_of(latest_routine("jobs_record_lifecycle"))
    assert re.search(r"ON __SCHEMA__\.jobs\s+AFTER UPDATE\s+AS", trigger)
    assert "FROM inserted AS n" in trigger and "JOIN deleted AS o ON o.id = n.id" in trigger
    assert "WHERE n.event_seq > o.event_seq" in trigger
    assert "FOR JSON PATH, INCLUDE_NULL_VALUES, WITHOUT_ARRAY_WRAPPER" in trigger
    keys = re.findall(r"AS \[(\w+)\]", trigger)
    assert keys == ["status", "attempt", "error", "retry_at"]
    assert "WHEN n.status IN (N'failed', N'dead', N'cancelled', N'queued')" in trigger
    assert "WHEN n.status = N'failed'" in trigger
    # An event already stored under the number is kept; the same rule as ON CONFLICT DO NOTHING.
    assert "e.job_id = n.id AND e.seq = n.event_seq" in trigger
    # retry_at: whole seconds, six fractional digits and a Z, which readers take as UTC.
    assert "CONVERT(nvarchar(19), n.run_at, 126)" in trigger
    assert "DATEPART(microsecond, n.run_at)" in trigger and "N'Z'" in trigger
    sample = "2030-01-01T12:00:05" + "." + ("000000" + "7")[-6:] + "Z"
    assert msgspec.json.decode(f'"{sample}"'.encode(), type=datetime) == datetime(
        2030, 1, 1, 12, 0, 5, 7, tzinfo=UTC
    )


def test_the_baseline_creates_the_event_columns_with_their_tables() -> None:
    """What version 4 of the development scripts added to existing tables, the baseline creates
    with them, under the same constraint names."""
    [(_, _, text)] = [script for script in schema_scripts("sqlserver") if script[0] == BASELINE]
    batches = [code_of(batch).strip() for batch in split_batches(text)]
    assert not [b for b in batches if "ALTER TABLE" in b]
    [jobs] = [b for b in batches if "CREATE TABLE __SCHEMA__.jobs " in b]
    assert "event_seq         bigint NOT NULL CONSTRAINT jobs_event_seq_default DEFAULT 0" in jobs
    [events] = [b for b in batches if "CREATE TABLE __SCHEMA__.job_events " in b]
    assert "transient    bit NOT NULL CONSTRAINT job_events_transient_default DEFAULT 0" in events
    [index] = [b for b in batches if "CREATE INDEX job_events_transient" in b]
    assert "ON __SCHEMA__.job_events (occurred_at)" in index and "WHERE transient = 1" in index
    assert batches[0].startswith("SET ANSI_NULLS ON;") and "SET QUOTED_IDENTIFIER ON;" in batches[0]
    routines = re.findall(r"CREATE OR ALTER (\w+) __SCHEMA__\.(\w+)", code_of(text))
    assert routines == [
        ("FUNCTION", "add_seconds"),
        ("TRIGGER", "jobs_record_lifecycle"),
        ("PROCEDURE", "settle_continuations"),
    ]


def test_version_6_drops_the_trigger_and_adds_the_attempt_marks() -> None:
    [(_, name, text)] = [script for script in schema_scripts("sqlserver") if script[0] == 6]
    assert name == "006_events.sql"
    batches = [flat(batch) for batch in split_batches(text)]
    assert batches[0].startswith("SET ANSI_NULLS ON;") and "SET QUOTED_IDENTIFIER ON;" in batches[0]
    assert (
        "IF OBJECT_ID(N'__SCHEMA__.jobs_record_lifecycle', N'TR') IS NOT NULL "
        "DROP TRIGGER __SCHEMA__.jobs_record_lifecycle;" in batches
    )
    [columns] = [b for b in batches if "ALTER TABLE" in b]
    added = re.findall(
        r"IF NOT EXISTS \(SELECT 1 FROM sys\.columns WHERE object_id = "
        r"OBJECT_ID\(N'__SCHEMA__\.job_attempts'\) AND name = N'(\w+)'\) "
        r"ALTER TABLE __SCHEMA__\.job_attempts ADD (\w+) ([^;]+);",
        columns,
    )
    assert [(checked, column) for checked, column, _ in added] == [
        (column, column)
        for column in (
            "start_seq",
            "end_seq",
            "end_status",
            "end_attempt",
            "end_error",
            "end_run_at",
        )
    ]
    assert [kind for _, _, kind in added] == [
        "bigint NULL", "bigint NULL", "nvarchar(16) COLLATE Latin1_General_100_BIN2 NULL",
        "int NULL", "nvarchar(max) NULL", "datetime2(6) NULL",
    ]  # fmt: skip
    routines = re.findall(r"CREATE OR ALTER (\w+) __SCHEMA__\.(\w+)", code_of(text))
    assert routines == [("PROCEDURE", "settle_continuations")]
    assert "@changes nvarchar(max) OUTPUT" in flat(latest_routine("settle_continuations"))


def test_jobworker_sql_prints_the_sqlserver_scripts() -> None:
    assert "sqlserver" in DIALECTS
    result = CliRunner().invoke(main, ["sql", "--dialect", "sqlserver", "--schema", "acme"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "-- jobworker schema version 5 (005_baseline.sql)" in out
    assert "-- jobworker schema version 6 (006_events.sql)" in out
    assert "CREATE TABLE [acme].jobs" in out and "__SCHEMA__" not in out
    assert re.search(r"^GO$", out, re.MULTILINE)
    assert [v for v, _, _ in schema_sql("sqlserver", "acme")] == VERSIONS
    bad = CliRunner().invoke(main, ["sql", "--dialect", "sqlserver", "--schema", "Acme"])
    assert bad.exit_code == 2 and "invalid schema name" in bad.output


# pyodbc ---------------------------------------------------------------------------------------


def test_a_missing_pyodbc_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyodbc", None)  # import pyodbc -> ModuleNotFoundError
    with pytest.raises(MissingExtraError, match=re.escape("pip install 'jobworker[sqlserver]'")):
        create_storage(URL)


def test_an_unreachable_server_is_a_configuration_error() -> None:
    """With the real pyodbc (the dev extra installs it; it needs unixODBC, which .ci/run
    installs): nothing listens on port 1, and without Microsoft's driver installed the driver
    manager refuses first."""
    url = "mssql+pyodbc://app:secret@127.0.0.1:1/jobs"
    storage = create_storage(url, Settings(database_url=url, connect_timeout=2))

    async def open_it() -> None:
        try:
            await storage.open()
        finally:
            await storage.close()

    with pytest.raises(ConfigurationError, match=r"cannot connect to SQL Server at .*app:\*\*\*@"):
        asyncio.run(open_it())


# A stand-in for pyodbc ------------------------------------------------------------------------


class FakeError(Exception):
    pass


class FakeIntegrityError(FakeError):
    pass


class Sets:
    """An answer of several result sets: a statement's own answer, then the status changes it
    made, or the rows a page of events is read from."""

    def __init__(self, *sets: list[tuple[Any, ...]]) -> None:
        self.sets = [list(rows) for rows in sets]


Answer = list[tuple[Any, ...]] | Sets | None
Responder = Callable[[str, tuple[Any, ...]], Answer]


class FakeCursor:
    def __init__(self, conn: FakeConnection) -> None:
        self.conn = conn
        self.description: list[tuple[str]] | None = None
        self.rows: list[tuple[Any, ...]] = []
        self.pending: list[list[tuple[Any, ...]]] = []

    def execute(self, sql: str, *params: Any) -> FakeCursor:
        self.conn.log.append((self.conn.name_of(sql), sql, params))
        answer = self.conn.respond(self.conn.name_of(sql) or sql, params)
        if isinstance(answer, Sets):
            self.pending = list(answer.sets)
        else:
            self.pending = [] if answer is None else [answer]
        self.nextset()
        return self

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self.rows

    def nextset(self) -> bool:
        if not self.pending:
            self.description, self.rows = None, []
            return False
        self.description, self.rows = [("column",)], self.pending.pop(0)
        return True

    def close(self) -> None:
        pass


class FakeConnection:
    def __init__(self, respond: Responder) -> None:
        self.respond = respond
        self.log: list[tuple[str | None, str, tuple[Any, ...]]] = []
        self.names = {s.sql: name for name, s in statements("jobworker").items()}

    def name_of(self, sql: str) -> str | None:
        return self.names.get(sql)

    def cursor(self) -> FakeCursor:
        return FakeCursor(self)

    def close(self) -> None:
        pass


class Harness:
    """A SQLServerStorage on the stand-in; `answers[name]` is what a named statement returns."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.answers: dict[str, Any] = {}
        self.connections: list[FakeConnection] = []
        self.connect_args: list[tuple[str, dict[str, Any]]] = []
        fake = types.ModuleType("pyodbc")
        fake.Error = FakeError  # type: ignore[attr-defined]
        fake.IntegrityError = FakeIntegrityError  # type: ignore[attr-defined]
        fake.connect = self.connect  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "pyodbc", fake)
        self.clock = FrozenClock(datetime(2030, 1, 1, 12, 0, tzinfo=UTC))
        self.storage = SQLServerStorage(URL, Settings(database_url=URL), self.clock)

    def connect(self, connection_string: str, **kwargs: Any) -> FakeConnection:
        self.connect_args.append((connection_string, kwargs))
        conn = FakeConnection(self.respond)
        self.connections.append(conn)
        return conn

    def respond(self, name: str, params: tuple[Any, ...]) -> Answer:
        if name not in statements("jobworker"):
            return None  # a plain batch: SET, BEGIN/COMMIT TRANSACTION, a schema script
        answer = self.answers[name]
        if isinstance(answer, BaseException):
            raise answer
        if callable(answer):
            result: Answer = answer(params)
            return result
        if answer is None or isinstance(answer, Sets):
            return answer
        return list(answer)

    @property
    def log(self) -> list[tuple[str | None, str, tuple[Any, ...]]]:
        return [entry for conn in self.connections for entry in conn.log]

    def params(self, name: str) -> dict[str, Any]:
        """The parameters of the last run of a named statement, by name."""
        [*_, (_, _sql, values)] = [entry for entry in self.log if entry[0] == name]
        return dict(zip(statements("jobworker")[name].params, values, strict=True))

    def executed(self) -> set[str]:
        return {name for name, _, _ in self.log if name is not None}


@pytest.fixture
def harness(monkeypatch: pytest.MonkeyPatch) -> Harness:
    return Harness(monkeypatch)  # each test closes the storage in its own event loop


def turns(*answers: Any) -> Callable[[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """An answer that changes on every run: rows, or an exception to raise."""
    queue = iter(answers)

    def answer(params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        turn = next(queue)
        if isinstance(turn, BaseException):
            raise turn
        rows: list[tuple[Any, ...]] = turn
        return rows

    return answer


def naive(dt: datetime) -> datetime:
    return dt.astimezone(UTC).replace(tzinfo=None)


def new_job(clock: FrozenClock, **overrides: Any) -> NewJob:
    fields: dict[str, Any] = {
        "id": uuid.uuid4(),
        "job_type": "t.noop",
        "queue": "default",
        "priority": 0,
        "args": b'{"a":1}',
        "max_attempts": 3,
        "status": JobStatus.QUEUED,
        "run_at": clock.now(),
        "enqueued_at": clock.now(),
    }
    fields.update(overrides)
    return NewJob(**fields)


async def test_open_connects_once_in_autocommit_and_sets_xact_abort(harness: Harness) -> None:
    await harness.storage.open()
    await harness.storage.open()
    [(connection_string, kwargs)] = harness.connect_args
    assert connection_string.startswith("DRIVER={ODBC Driver 18 for SQL Server};SERVER=db.example")
    assert kwargs == {"autocommit": True, "timeout": 10}
    assert [sql for _, sql, _ in harness.log] == ["SET XACT_ABORT ON;"]
    await harness.storage.close()


async def test_enqueue_sends_one_json_batch_and_reads_holders(harness: Harness) -> None:
    clock = harness.clock
    parent = uuid.uuid4()
    holder = uuid.uuid4()
    first = new_job(
        clock,
        idempotency_key="k",
        continues_job_id=parent,
        result_ttl=9.5,
        kind=JobKind.SYSTEM,
        trace_context=TRACE_CONTEXT,
    )
    second = new_job(clock, idempotency_key="k", run_at=clock.now() + timedelta(microseconds=7))
    harness.answers["enqueue"] = [
        (0, True, str(first.id).upper(), None),
        (1, False, str(holder).upper(), None),
    ]
    results = await harness.storage.jobs.enqueue_many([first, second])
    assert [(r.job_id, r.created) for r in results] == [(first.id, True), (holder, False)]
    params = harness.params("enqueue")
    assert params["now"] == "2030-01-01T12:00:00.000000"
    assert params["default_ttl"] == 86400.0
    sent = msgspec.json.decode(params["jobs"])
    assert sent[0] == {
        "id": str(first.id),
        "job_type": "t.noop",
        "queue": "default",
        "priority": 0,
        "status": "queued",
        "args": '{"a":1}',
        "max_attempts": 3,
        "enqueued_at": "2030-01-01T12:00:00.000000",
        "run_at": "2030-01-01T12:00:00.000000",
        "idempotency_key": "k",
        "continues_job_id": str(parent),
        "result_ttl": 9.5,
        "kind": "system",
        "trace_context": TRACE_CONTEXT,
    }
    assert sent[1]["kind"] == "user" and sent[1]["trace_context"] is None
    assert sent[1]["run_at"] == "2030-01-01T12:00:00.000007"
    assert sent[1]["continues_job_id"] is None and sent[1]["result_ttl"] is None

    harness.answers["enqueue"] = [(0, False, None, str(parent).upper())]
    with pytest.raises(JobNotFoundError) as info:
        await harness.storage.jobs.enqueue_many([first])
    assert info.value.job_id == parent
    with pytest.raises(ConfigurationError, match="needs PostgreSQL"):
        await harness.storage.jobs.enqueue_many([first], connection=object())
    assert await harness.storage.jobs.enqueue_many([]) == []
    await harness.storage.close()


async def test_a_key_race_is_answered_on_the_next_turn(harness: Harness) -> None:
    job = new_job(harness.clock, idempotency_key="k")
    holder = uuid.uuid4()
    harness.answers["enqueue"] = turns(
        FakeIntegrityError("23000", "duplicate key ... unique index 'jobs_idempotency_key'"),
        [(0, False, str(holder), None)],
    )
    [result] = await harness.storage.jobs.enqueue_many([job])
    assert result.job_id == holder and not result.created
    assert "IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION;" in [sql for _, sql, _ in harness.log]
    await harness.storage.close()


async def test_claim_converts_rows_and_sends_caps(harness: Harness) -> None:
    now = harness.clock.now()
    low, high = uuid.uuid4(), uuid.uuid4()
    row = (str(low).upper(), "t.a", "default", '{"x":1}', 1, 3, naive(now), naive(now), None, 0)
    high_row = (str(high).upper(), "t.b", "q", "{}", 2, 5, naive(now), naive(now), 4.5, 9)
    harness.answers["claim"] = [
        (*row, naive(now), 1, None),
        (*high_row, naive(now), 7, TRACE_CONTEXT),
    ]
    claimed = await harness.storage.jobs.claim(
        "w1", ["t.a", "t.b", "t.c"], ["default", "q"], 10, 30.0, concurrency={"t.b": 2, "x": 1}
    )
    assert [job.id for job in claimed] == [high, low]  # most urgent first
    assert claimed[1].args == b'{"x":1}' and claimed[1].enqueued_at == now
    assert claimed[1].started_at.tzinfo is UTC and claimed[0].result_ttl == 4.5
    assert [job.event_seq for job in claimed] == [7, 1]  # the number of its `running` event
    assert [job.trace_context for job in claimed] == [TRACE_CONTEXT, None]
    params = harness.params("claim")
    assert msgspec.json.decode(params["job_types"]) == ["t.a", "t.c"]
    assert msgspec.json.decode(params["caps"]) == [{"job_type": "t.b", "cap": 2}]
    assert msgspec.json.decode(params["queues"]) == ["default", "q"]
    assert params["lease_until"] == "2030-01-01T12:00:30.000000"
    assert params["lock_prefix"] == "jobworker.cap.jobworker."
    assert await harness.storage.jobs.claim("w1", [], ["q"], 10, 30.0) == []
    await harness.storage.close()


async def test_outcomes_carry_expiry_and_deadlocks_are_retried(harness: Harness) -> None:
    clock = harness.clock
    job_id = uuid.uuid4()
    retry_at = clock.now() + timedelta(seconds=5)
    done = Completion(
        job_id=job_id,
        attempt=1,
        lease_owner="w1",
        started_at=clock.now(),
        ended_at=clock.now(),
        outcome=Succeeded(result=b'{"rows":3}'),
        result_ttl=0.25,
    )
    failed = Completion(
        job_id=uuid.uuid4(),
        attempt=2,
        lease_owner="w1",
        started_at=clock.now(),
        ended_at=clock.now(),
        outcome=Failed(error="E", traceback="tb"),
        retry_at=retry_at,
    )
    harness.answers["end_attempts"] = turns(
        FakeError("40001", "[SQL Server]Transaction was deadlocked (1205)"),
        [
            (str(job_id).upper(), "succeeded", 1, 1, None, naive(clock.now())),
            (str(failed.job_id), "failed", 2, 4, "E", naive(retry_at)),
        ],
    )
    assert (await harness.storage.jobs.complete_many([done, failed])).applied == 2
    sent = msgspec.json.decode(harness.params("end_attempts")["ends"])
    # Each outcome both ways: for a job without a cancel request, then for one with it.
    assert [(e["id"], e["cancel_requested"]) for e in sent] == [
        (str(job_id), 0), (str(job_id), 1), (str(failed.job_id), 0), (str(failed.job_id), 1),
    ]  # fmt: skip
    success, _, retried, cancelled = sent
    assert success["status"] == "succeeded" and success["result"] == '{"rows":3}'
    assert success["expires_at"] == "2030-01-01T12:00:00.250000" and success["ends"] == 1
    assert (retried["status"], retried["ends"], retried["run_at"]) == (
        "failed", 0, "2030-01-01T12:00:05.000000",
    )  # fmt: skip
    # Sent with every end: used only if the job ends (a cancel request ends a failure).
    assert retried["expires_at"] is not None and retried["result"] is None
    assert (cancelled["status"], cancelled["ends"], cancelled["run_at"]) == ("cancelled", 1, None)
    assert (cancelled["error_effect"], cancelled["traceback_effect"]) == ("keep", "clear")
    assert len([entry for entry in harness.log if entry[0] == "end_attempts"]) == 2
    await harness.storage.close()


async def test_every_method_runs_its_statements_with_every_parameter(harness: Harness) -> None:
    """Each method once, on canned answers: every statement it runs is given exactly the
    parameters it declares (`Statement.bind` checks), none of them None."""
    s, now = harness.storage, harness.clock.now()
    job_id = uuid.uuid4()
    record = (
        str(job_id).upper(), "t.noop", "default", 0, "dead", '{"a":1}', 3, 3, naive(now),
        naive(now), naive(now), naive(now), None, None, "k", None, "null", "E", "tb", 60.0,
        naive(now + timedelta(seconds=60)), "system",
    )  # fmt: skip
    harness.answers.update(
        {
            "schema_table_exists": [(1,)],
            "schema_version": [(VERSIONS[-1],)],
            "migration_lock": [(0,)],
            "enqueue": [(0, True, str(job_id), None)],
            "claim": [],
            "extend_leases": [(str(job_id),)],
            "end_attempts": [(str(job_id), "succeeded", 1, 3, None, naive(now))],
            "lock_leases": [(str(job_id), 1, 3, "w1", naive(now), False, 1)],
            "leased_job_ids": [(str(job_id).upper(),)],
            "read_events": Sets([], [], [(2, "progress", naive(now), '{"done":1}')]),
            "store_events": None,
            "purge_transient_events": [(6,)],
            "cancel": [("running", False, True)],
            "cancel_requests": [(str(job_id),)],
            "retry_dead": [("dead", True)],
            "delete_job": [("succeeded", True)],
            "resolve_continuations": [(4,)],
            "set_queue_paused": None,
            "paused_queues": [("mail",)],
            "queue_counts": [("default", "queued", 2), ("mail", "running", 1)],
            "queue_states": [("mail", True), ("idle", False)],
            "get_job": [record],
            "list_jobs": [record],
            "list_jobs_walk": Sets([], [(str(job_id).upper(),)]),
            "throughput": [(0, "succeeded", 4), (2, "failed", 1)],
            "count_by_status": [("queued", 5), ("dead", 1)],
            "list_attempts": [
                (str(job_id), 1, "w1", naive(now), naive(now), "lost", "gone (worker w1)", None)
            ],
            "purge_expired": [(7,)],
            "lease_acquire": [(1,)],
            "lease_renew": [(1,)],
            "lease_release": None,
            "lease_current": [("beat-1", "t0k3n", naive(now))],
        }
    )
    assert await s.schema.migrate() == []
    await s.schema.check_schema()
    await s.jobs.enqueue_many([new_job(harness.clock)])
    assert await s.jobs.claim("w1", ["t.noop"], ["default"], 5, 30.0) == []
    assert await s.jobs.extend_leases("w1", [(job_id, 1)], 30.0) == {job_id}
    done = Completion(
        job_id=job_id,
        attempt=1,
        lease_owner="w1",
        started_at=now,
        ended_at=now,
        outcome=Succeeded(result=b"1"),
    )
    recorded = await s.jobs.complete_many([done])
    assert recorded.applied == 1
    assert [(e.seq, e.kind) for e in recorded.events] == [
        (2, EventKind.RESULT),
        (3, EventKind.LIFECYCLE),
    ]
    assert await s.maintenance.leased_job_ids("w1") == [job_id]
    assert await s.jobs.release_owner("w1", lost=False, reason="shutdown") == 1
    assert harness.params("lock_leases")["expired"] is False
    assert await s.maintenance.rescue_expired() == 1
    params = harness.params("lock_leases")
    assert params["expired"] is True and params["owner"] == "" and params["limit"] == 500
    assert await s.control.cancel(job_id, "no") is CancelResult.REQUESTED
    assert await s.jobs.cancel_requests("w1") == [job_id]
    await s.control.retry_job(job_id)
    await s.control.delete_job(job_id)
    assert await s.maintenance.resolve_continuations() == 4
    await s.control.set_queue_paused("mail", True)
    assert await s.inspection.paused_queues() == {"mail"}
    infos = await s.inspection.queues()
    assert [(q.name, q.paused, q.counts) for q in infos] == [
        ("default", False, {"queued": 2}),
        ("idle", False, {}),
        ("mail", True, {"running": 1}),
    ]
    got = await s.inspection.get(job_id)
    assert got is not None and got.id == job_id and got.status is JobStatus.DEAD
    assert got.args == b'{"a":1}' and got.result == b"null" and got.expires_at is not None
    assert got.enqueued_at == now and got.enqueued_at.tzinfo is UTC
    assert got.kind is JobKind.SYSTEM
    before = uuid.uuid4()
    listed = await s.inspection.list_jobs(
        JobFilter(
            status=JobStatus.DEAD,
            kind=JobKind.SYSTEM,
            queue="default",
            search="AB-c",
            before=before,
        ),
        limit=5,
    )
    assert [r.id for r in listed] == [job_id]
    assert msgspec.json.decode(harness.params("list_jobs")["filter"]) == {
        "status": "dead",
        "kind": "system",
        "job_type": None,
        "queue": "default",
        "idempotency_key": None,
        "search_types": "ab-c",
        "search_ids": "ab-c",
        "before": str(before),
    }
    assert await s.inspection.list_jobs(JobFilter(), limit=0) == []
    walked = await s.inspection.list_jobs(JobFilter(search="x"), limit=5, scan_limit=100)
    assert list(walked) == [] and walked.scan_edge == job_id
    assert harness.params("list_jobs_walk")["scan_limit"] == 100
    since = now - timedelta(hours=1)
    assert await s.inspection.throughput(since, now, 60) == [(0, "succeeded", 4), (2, "failed", 1)]
    assert harness.params("throughput")["bucket"] == 60
    overview = await s.inspection.overview(10)
    assert overview.counts[JobStatus.QUEUED] == 5 and overview.estimated == frozenset()
    assert [q.name for q in overview.queues] == ["default", "idle", "mail"]
    lease = s.leadership.leader_lease("beat", "beat-1", 30.0)
    assert await lease.acquire() and await lease.renew()
    current = await lease.current()
    assert current is not None and current.holder == "beat-1" and current.since == now
    await lease.release()
    assert lease.term is None
    counts = await s.inspection.count_by_status()
    assert counts[JobStatus.QUEUED] == 5 and counts[JobStatus.RUNNING] == 0
    [attempt] = await s.inspection.attempts(job_id)
    assert attempt.outcome is AttemptOutcome.LOST and attempt.job_id == job_id
    assert await s.maintenance.purge_expired(limit=10) == 7
    [stored] = await s.events.read_events(job_id)
    assert (stored.seq, stored.kind, stored.decoded()) == (2, EventKind.PROGRESS, {"done": 1})
    assert await s.live.read_live(job_id, 0, 10) == [stored]
    await s.live.store_live([stored], [("w1", 1)])
    assert await s.live.purge_live(now) == 6
    # Without a clock of its own, the storage keeps the server's time, read when it opens.
    server_now = now + timedelta(hours=1)
    harness.answers["database_now"] = [(naive(server_now),)]
    server_timed = SQLServerStorage(URL, Settings(database_url=URL))
    await server_timed.open()
    assert abs(server_timed.clock.now() - server_now) < timedelta(seconds=5)
    await server_timed.close()
    assert harness.executed() == (
        set(queries("sqlserver")) - BEAT_STATEMENTS - WORKER_STATEMENTS - CATALOGUE_STATEMENTS
    )
    for name, _, values in harness.log:
        assert None not in values, name
    await s.close()


def statements_run(harness: Harness, since: int) -> list[str]:
    """The names of the statements run since log entry `since`, and the transactions' bounds."""
    return [name or sql for name, sql, _ in harness.log[since:] if name or "TRANSACTION" in sql]


async def test_complete_stores_events_first_and_answers_the_ends_events(
    harness: Harness,
) -> None:
    clock = harness.clock
    now = clock.now()
    ended_at = now - timedelta(seconds=1)
    failed_id, released_id, succeeded_id, next_id = (uuid.uuid4() for _ in range(4))
    retry_at = now + timedelta(seconds=5)

    def completion(job_id: uuid.UUID, outcome: Any, **extra: Any) -> Completion:
        fields: dict[str, Any] = {"started_at": now, "ended_at": ended_at, "attempt": 1}
        fields.update(extra)
        return Completion(job_id=job_id, lease_owner="w1", outcome=outcome, **fields)

    def job_event(seq: int, kind: EventKind, payload: object) -> JobEvent:
        return JobEvent(
            job_id=failed_id,
            seq=seq,
            kind=kind,
            occurred_at=now + timedelta(microseconds=seq),
            payload=msgspec.Raw(msgspec.json.encode(payload)),
        )

    progress = job_event(2, EventKind.PROGRESS, {"done": 1, "label": "é"})
    chunk = job_event(3, EventKind.CHUNK, {"text": "hi"})
    harness.answers["store_events"] = None
    harness.answers["end_attempts"] = Sets(
        [
            (str(failed_id).upper(), "failed", 1, 4, "E", naive(retry_at)),
            (str(released_id).upper(), "queued", 0, 2, None, naive(now)),
            (str(succeeded_id).upper(), "succeeded", 1, 6, None, naive(now)),
        ],
        # The continuation the success queued.
        [(str(next_id).upper(), 1, "queued", 0, None, naive(now))],
    )
    calls = len(harness.log)
    recorded = await harness.storage.jobs.complete_many(
        [
            completion(
                failed_id,
                Failed(error="E", traceback="tb"),
                retry_at=retry_at,
                event_seq=3,
                start_seq=1,
            ),
            completion(released_id, Released(reason="shutdown")),
            completion(succeeded_id, Succeeded(result=b'{"x":1}'), event_seq=4, start_seq=1),
        ],
        [progress, chunk],
        emitted_by=[("w1", 1), ("w1", 1)],
    )
    assert statements_run(harness, calls) == [
        "BEGIN TRANSACTION;",
        "end_attempts",
        "store_events",
        "COMMIT TRANSACTION;",
    ], "the continuation's event is stored in the completion's transaction"
    params = harness.params("end_attempts")
    ends = msgspec.json.decode(params["ends"])
    assert [(e["seq_floor"], e["start_seq"], e["seq_step"]) for e in ends[::2]] == [
        (3, 1, 1), (0, 0, 1), (4, 1, 2),
    ]  # fmt: skip
    assert [e["attempt_change"] for e in ends] == [0, 0, -1, 0, 0, 0], "a release gives it back"
    assert params["now"] == "2030-01-01T12:00:00.000000"
    # Events of kinds that are not kept (Settings.kept_kinds) are stored as transient rows.
    # Each fenced by the attempt that emitted it.
    assert msgspec.json.decode(params["events"]) == [
        {
            "owner": "w1",
            "attempt": 1,
            "job_id": str(failed_id),
            "seq": 2,
            "kind": "progress",
            "occurred_at": "2030-01-01T12:00:00.000002",
            "payload": '{"done":1,"label":"é"}',  # JSON text, read back as it was written
            "transient": 0,
        },
        {
            "owner": "w1",
            "attempt": 1,
            "job_id": str(failed_id),
            "seq": 3,
            "kind": "chunk",
            "occurred_at": "2030-01-01T12:00:00.000003",
            "payload": '{"text":"hi"}',
            "transient": 1,
        },
    ]
    assert msgspec.json.decode(harness.params("store_events")["events"]) == [
        {
            "owner": None,  # the storage's own event: not fenced
            "attempt": None,
            "job_id": str(next_id),
            "seq": 1,
            "kind": "lifecycle",
            "occurred_at": "2030-01-01T12:00:00.000000",  # the storage's clock
            "payload": '{"status":"queued","attempt":0,"error":null,"retry_at":null}',
            "transient": 0,
        }
    ]
    assert recorded.applied == 3
    failed, released, result, succeeded = recorded.events
    assert (failed.job_id, failed.seq, failed.kind) == (failed_id, 4, EventKind.LIFECYCLE)
    assert failed.occurred_at == ended_at, "an end is timed by its attempt's end"
    assert failed.decoded(Lifecycle) == Lifecycle(
        status=JobStatus.FAILED, attempt=1, error="E", retry_at=retry_at
    )
    assert (released.job_id, released.seq) == (released_id, 2)
    assert released.decoded(Lifecycle) == Lifecycle(status=JobStatus.QUEUED, attempt=0)
    assert released.decoded()["retry_at"] is None, "retry_at only for a failed job"
    # A success takes two numbers: its result (read from the job's row, never stored), then
    # its lifecycle event.
    assert (result.job_id, result.seq, result.kind) == (succeeded_id, 5, EventKind.RESULT)
    assert result.decoded() == {"value": {"x": 1}} and result.occurred_at == ended_at
    assert (succeeded.seq, succeeded.kind) == (6, EventKind.LIFECYCLE)
    assert succeeded.decoded(Lifecycle) == Lifecycle(status=JobStatus.SUCCEEDED, attempt=1)

    # A caller without a live bus gets no events; outcomes without changes store none.
    harness.answers["end_attempts"] = [(str(failed_id), "dead", 1, 4, "E", naive(now))]
    calls = len(harness.log)
    recorded = await harness.storage.jobs.complete_many(
        [completion(failed_id, Failed(error="E", traceback="tb"))], lifecycle=False
    )
    assert recorded.applied == 1 and recorded.events == []
    assert "store_events" not in statements_run(harness, calls)

    # Events alone (a worker flushing them while its job runs) are stored on their own.
    calls = len(harness.log)
    recorded = await harness.storage.jobs.complete_many([], [chunk])
    assert recorded.applied == 0 and recorded.events == []
    assert statements_run(harness, calls) == ["store_events"]
    assert msgspec.json.decode(harness.params("store_events")["events"])[0]["transient"] == 1
    calls = len(harness.log)
    assert (await harness.storage.jobs.complete_many([])).applied == 0
    assert len(harness.log) == calls, "nothing to record: no round trip"
    await harness.storage.close()


async def test_status_changes_store_their_events_in_their_transaction(harness: Harness) -> None:
    """A cancel, a retry, a delete, the repair sweep, an enqueue after the parent ended and a
    lease's end: each statement answers its changes, whose events are stored before it
    commits, timed by the storage's clock."""
    s, now = harness.storage, harness.clock.now()
    job_id, child_id = uuid.uuid4(), uuid.uuid4()
    retried = (str(job_id).upper(), 4, "queued", 3, None, naive(now))
    cancelled = (str(job_id).upper(), 2, "cancelled", 0, "no", naive(now))
    orphan = (str(child_id).upper(), 1, "cancelled", 0, f"parent job {job_id} ended cancelled",
              naive(now))  # fmt: skip
    harness.answers.update(
        {
            "store_events": None,
            "cancel": Sets([("queued", True, False)], [cancelled, orphan]),
            "retry_dead": Sets([("dead", True)], [retried]),
            "delete_job": Sets([("dead", True)], [orphan]),
            "resolve_continuations": Sets([(1,)], [orphan]),
            "lock_leases": [(str(job_id), 2, 2, "w1", None, False, 3)],
            "end_attempts": Sets([retried], [orphan]),
            "enqueue": Sets([(0, True, str(child_id), None)], [orphan]),
        }
    )

    async def stored(call: Any, *names: str) -> list[dict[str, Any]]:
        calls = len(harness.log)
        await call
        assert statements_run(harness, calls) == [
            "BEGIN TRANSACTION;",
            *names,
            "store_events",
            "COMMIT TRANSACTION;",
        ], names
        assert harness.params(names[-1])["now"] == "2030-01-01T12:00:00.000000"
        rows: list[dict[str, Any]] = msgspec.json.decode(harness.params("store_events")["events"])
        for row in rows:
            assert (row["kind"], row["transient"]) == ("lifecycle", 0)
            assert row["occurred_at"] == "2030-01-01T12:00:00.000000"
        return rows

    first, second = await stored(s.control.cancel(job_id, "no"), "cancel")
    assert (first["job_id"], first["seq"]) == (str(job_id), 2)
    assert msgspec.json.decode(first["payload"]) == {
        "status": "cancelled", "attempt": 0, "error": "no", "retry_at": None,
    }  # fmt: skip
    assert (second["job_id"], second["seq"]) == (str(child_id), 1)
    [row] = await stored(s.control.retry_job(job_id), "retry_dead")
    assert (row["seq"], msgspec.json.decode(row["payload"])["status"]) == (4, "queued")
    [row] = await stored(s.control.delete_job(job_id), "delete_job")
    assert row["job_id"] == str(child_id)
    await stored(s.maintenance.resolve_continuations(), "resolve_continuations")
    [row] = await stored(s.maintenance.rescue_expired(), "lock_leases", "end_attempts")
    assert row["job_id"] == str(child_id), "a lease's end is recorded in its attempt row"
    await stored(s.jobs.enqueue_many([new_job(harness.clock)]), "enqueue")

    # Nothing changed: nothing stored, the answer as it was.
    harness.answers["cancel"] = [("running", False, True)]
    calls = len(harness.log)
    assert await s.control.cancel(job_id, "no") is CancelResult.REQUESTED
    assert statements_run(harness, calls) == ["BEGIN TRANSACTION;", "cancel", "COMMIT TRANSACTION;"]
    await s.close()


async def test_lease_ends_are_decided_under_their_lock_and_applied_as_completions(
    harness: Harness,
) -> None:
    """The leases are locked and ended in one transaction: each locked row becomes an
    `attempt_ends.Lease`, `of_lease` decides its end (above the caller's sequence floor), and
    `end_attempts` applies them as it applies completions."""
    s, now = harness.storage, harness.clock.now()
    job_id, dead_id, asked_id = (uuid.uuid4() for _ in range(3))
    started = now - timedelta(seconds=9)
    harness.answers.update(
        {
            "lock_leases": [
                (str(job_id).upper(), 1, 3, "w1", naive(started), False, 4),
                (str(dead_id).upper(), 3, 3, "w1", None, False, 7),
                (str(asked_id).upper(), 1, 3, "w2", naive(now), True, 2),
            ],
            # One of them was completed between the lock and the end: its fence does not hold.
            "end_attempts": [
                (str(job_id), "queued", 1, 41, "lease expired (worker w1)", naive(now)),
                (str(dead_id), "dead", 3, 8, "lease expired (worker w1)", naive(now)),
            ],
            "leased_job_ids": [(str(job_id).upper(),)],
        }
    )
    calls = len(harness.log)
    assert await s.maintenance.rescue_expired(seq_floors={job_id: 40}) == 2
    assert statements_run(harness, calls) == [
        "BEGIN TRANSACTION;",
        "lock_leases",
        "end_attempts",
        "COMMIT TRANSACTION;",
    ]
    assert harness.params("lock_leases") == {
        "expired": True,
        "owner": "",
        "now": "2030-01-01T12:00:00.000000",
        "limit": 500,
    }
    params = harness.params("end_attempts")
    assert params["events"] == "[]" and params["now"] == "2030-01-01T12:00:00.000000"
    lost, dead, asked = msgspec.json.decode(params["ends"])
    assert [(e["id"], e["owner"], e["cancel_requested"]) for e in (lost, dead, asked)] == [
        (str(job_id), "w1", 0), (str(dead_id), "w1", 0), (str(asked_id), "w2", 1),
    ]  # fmt: skip
    assert (lost["status"], lost["recorded"], lost["attempt_change"], lost["ends"]) == (
        "queued", "lost", 0, 0,
    )  # fmt: skip
    assert (lost["error_effect"], lost["error"], lost["run_at"]) == (
        "set", "lease expired (worker w1)", "2030-01-01T12:00:00.000000",
    )  # fmt: skip
    assert (lost["seq_floor"], lost["start_seq"], lost["seq_step"]) == (40, 4, 1)
    assert (lost["started_at"], lost["ended_at"]) == (ts(started), ts(now))
    assert (dead["status"], dead["ends"], dead["seq_floor"]) == ("dead", 1, 7)
    assert dead["started_at"] == ts(now), "a lease without a start: its end's time"
    assert (asked["status"], asked["recorded"], asked["ends"]) == ("cancelled", "cancelled", 1)
    assert (asked["error_effect"], asked["error"]) == ("keep", "lease expired (worker w2)")

    harness.answers["lock_leases"] = [(str(job_id), 2, 3, "w1", naive(now), False, 5)]
    harness.answers["end_attempts"] = [(str(job_id), "queued", 1, 6, None, naive(now))]
    assert await s.jobs.release_owner("w1", lost=False, reason="shutdown") == 1
    params = harness.params("lock_leases")
    assert (params["owner"], params["expired"], params["limit"]) == ("w1", False, 100_000)
    [released] = msgspec.json.decode(harness.params("end_attempts")["ends"])
    assert (released["status"], released["recorded"], released["attempt_change"]) == (
        "queued", "released", -1,
    )  # fmt: skip
    assert (released["error_effect"], released["seq_floor"]) == ("keep", 5)

    # Nothing locked: nothing to end.
    harness.answers["lock_leases"] = []
    calls = len(harness.log)
    assert await s.jobs.release_owner("w1", lost=True, reason="worker died") == 0
    assert statements_run(harness, calls) == [
        "BEGIN TRANSACTION;",
        "lock_leases",
        "COMMIT TRANSACTION;",
    ]
    assert await s.maintenance.rescue_expired(0) == 0

    assert await s.maintenance.leased_job_ids(None) == [job_id]
    params = harness.params("leased_job_ids")
    assert params == {
        "expired": True,
        "owner": "",
        "now": "2030-01-01T12:00:00.000000",
        "limit": 500,
    }
    assert await s.maintenance.leased_job_ids("w1", limit=3) == [job_id]
    assert harness.params("leased_job_ids")["owner"] == "w1"
    assert not harness.params("leased_job_ids")["expired"]
    await s.close()


async def test_event_reads_convert_rows(harness: Harness) -> None:
    """A page is read from the job's row, its attempts' marks and its stored rows (one call:
    the statement reads them in one moment), and merged by `event_log.event_page`."""
    s, job_id, now = harness.storage, uuid.uuid4(), harness.clock.now()
    earlier = now - timedelta(seconds=10)
    retry_at = now - timedelta(seconds=5)
    attempts = [
        (1, naive(earlier), naive(earlier), 1, 4, "failed", 1, "E", naive(retry_at)),
        (2, naive(retry_at), naive(now), 5, 9, "succeeded", 2, None, naive(retry_at)),
    ]
    stored = [
        (2, "progress", naive(earlier), '{"done":1}'),
        (3, "chunk", naive(earlier), '{"text":"ü"}'),
        # Stored by the trigger of an earlier version: the attempt row's event stands.
        (4, "lifecycle", naive(earlier), '{"status":"failed","attempt":1}'),
        (6, "progress", naive(now), '{"done":2}'),
    ]
    job = [("succeeded", 2, naive(retry_at), 9, '{"x":1}')]
    harness.answers.update(
        {"read_events": Sets(job, attempts, stored), "purge_transient_events": [(2,)]}
    )
    events = await s.live.read_live(job_id, 0, 10)
    assert harness.params("read_events") == {
        "job_id": str(job_id),
        "after_seq": 0,
        "limit": 10,
        "transient": True,
    }
    assert [(e.seq, e.kind) for e in events] == [
        (1, EventKind.LIFECYCLE),
        (2, EventKind.PROGRESS),
        (3, EventKind.CHUNK),
        (4, EventKind.LIFECYCLE),
        (5, EventKind.LIFECYCLE),
        (6, EventKind.PROGRESS),
        (8, EventKind.RESULT),
        (9, EventKind.LIFECYCLE),
    ]
    assert all(e.job_id == job_id and e.occurred_at.tzinfo is UTC for e in events)
    running, _, chunk, failed, _, _, result, succeeded = events
    assert running.decoded(Lifecycle) == Lifecycle(status=JobStatus.RUNNING, attempt=1)
    assert running.occurred_at == earlier
    assert bytes(chunk.payload) == '{"text":"ü"}'.encode()
    assert failed.decoded(Lifecycle) == Lifecycle(
        status=JobStatus.FAILED, attempt=1, error="E", retry_at=retry_at
    )
    assert result.decoded() == {"value": {"x": 1}} and result.occurred_at == now
    assert succeeded.decoded(Lifecycle) == Lifecycle(status=JobStatus.SUCCEEDED, attempt=2)

    await s.events.read_events(job_id, 5)
    assert harness.params("read_events")["transient"] is False
    assert harness.params("read_events")["after_seq"] == 5

    # A running job's `running` event is read from its row; no job: the stored rows alone.
    harness.answers["read_events"] = Sets([("running", 1, naive(now), 1, None)], [], [])
    [started] = await s.events.read_events(job_id)
    assert (started.seq, started.occurred_at) == (1, now)
    assert started.decoded(Lifecycle).status is JobStatus.RUNNING
    harness.answers["read_events"] = Sets([], [], stored[:1])
    assert [e.seq for e in await s.events.read_events(job_id)] == [2]

    calls = len(harness.log)
    assert await s.events.read_events(job_id, limit=0) == []
    assert await s.live.read_live(job_id, 0, 0) == []
    assert await s.live.purge_live(now, limit=0) == 0
    await s.live.store_live([], [])
    assert len(harness.log) == calls
    assert await s.live.purge_live(now - timedelta(seconds=1), limit=50) == 2
    assert harness.params("purge_transient_events") == {
        "before": "2030-01-01T11:59:59.000000",
        "limit": 50,
    }
    subscription = await s.live.subscribe_live(lambda ids: None)
    await subscription.close()  # readers poll: nothing to close
    assert not hasattr(s, "derives_result_events")
    await s.close()


async def test_answers_about_missing_or_busy_jobs(harness: Harness) -> None:
    s, job_id = harness.storage, uuid.uuid4()
    harness.answers.update(
        {
            "cancel": [(None, False, False)],
            "retry_dead": [(None, False)],
            "delete_job": [(None, False)],
        }
    )
    for call in (
        s.control.cancel(job_id, "x"),
        s.control.retry_job(job_id),
        s.control.delete_job(job_id),
    ):
        with pytest.raises(JobNotFoundError):
            await call
    harness.answers.update(
        {
            "cancel": [("succeeded", False, False)],
            "retry_dead": [("queued", False)],
            "delete_job": [("running", False)],
        }
    )
    assert await s.control.cancel(job_id, "x") is CancelResult.FINISHED
    with pytest.raises(InvalidJobStateError, match="only dead jobs can be retried"):
        await s.control.retry_job(job_id)
    with pytest.raises(InvalidJobStateError, match="cancel it first"):
        await s.control.delete_job(job_id)
    harness.answers["cancel"] = [("queued", True, False)]
    assert await s.control.cancel(job_id, "x") is CancelResult.CANCELLED
    await s.close()


async def test_migrate_runs_every_batch_in_one_locked_transaction(harness: Harness) -> None:
    harness.answers.update({"schema_table_exists": [(0,)], "migration_lock": [(0,)]})
    assert await harness.storage.schema.migrate() == VERSIONS
    sqls = [sql for _, sql, _ in harness.log]
    batches = [b for _, _, text in rendered_scripts("jobworker") for b in split_batches(text)]
    assert sqls[1] == "BEGIN TRANSACTION;" and sqls[-1] == "COMMIT TRANSACTION;"
    assert [name for name, _, _ in harness.log[2:4]] == ["migration_lock", "schema_table_exists"]
    assert harness.params("migration_lock") == {"resource": "jobworker.migrate.jobworker"}
    assert sqls[4:-1] == batches

    # At the baseline: the later scripts run, and only they.
    harness.answers.update({"schema_table_exists": [(1,)], "schema_version": [(BASELINE,)]})
    calls = len(harness.log)
    assert await harness.storage.schema.migrate() == VERSIONS[1:] == [6, 7, 8, 9, 10, 11]
    later = [b for v, _, text in rendered_scripts("jobworker") if v > BASELINE
             for b in split_batches(text)]  # fmt: skip
    assert [sql for _, sql, _ in harness.log[calls:]][4:-1] == later
    with pytest.raises(SchemaMissingError, match=rf"has schema version 5 .*needs {VERSIONS[-1]}"):
        await harness.storage.schema.check_schema()

    harness.answers["schema_version"] = [(VERSIONS[-1],)]
    assert await harness.storage.schema.migrate() == []
    await harness.storage.schema.check_schema()
    assert await harness.storage.schema.version() == VERSIONS[-1]

    # Older than the baseline (made by an unreleased development version): refused untouched.
    harness.answers["schema_version"] = [(3,)]
    calls = len(harness.log)
    with pytest.raises(SchemaMissingError, match=r"has schema version 3.*cannot upgrade it"):
        await harness.storage.schema.migrate()
    sqls = [sql for _, sql, _ in harness.log[calls:]]
    assert (
        sqls[0] == "BEGIN TRANSACTION;" and sqls[-1] == "IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION;"
    )
    assert not set(sqls) & set(batches), "no script ran"
    assert "COMMIT TRANSACTION;" not in sqls
    with pytest.raises(SchemaMissingError, match=r"version 3.*starts from version 5.*migrate"):
        await harness.storage.schema.check_schema()

    harness.answers["migration_lock"] = [(-1,)]
    with pytest.raises(ConfigurationError, match="migration lock"):
        await harness.storage.schema.migrate()
    assert harness.log[-1][1] == "IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION;"
    await harness.storage.close()


async def test_a_lost_connection_is_replaced_for_reads_only(harness: Harness) -> None:
    lost = FakeError("08S01", "Communication link failure")
    harness.answers["count_by_status"] = turns(lost, [("queued", 3)])
    counts = await harness.storage.inspection.count_by_status()
    assert counts[JobStatus.QUEUED] == 3 and len(harness.connections) == 2
    harness.answers["claim"] = lost
    with pytest.raises(FakeError):
        await harness.storage.jobs.claim("w1", ["t"], ["q"], 1, 5.0)
    assert len(harness.connections) == 2, "a claim is not repeated on a fresh connection"
    await harness.storage.close()


def test_the_backend_module_imports_without_pyodbc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyodbc", None)
    for module in PACKAGE.glob("*.py"):
        source = module.read_text()
        assert "\nimport pyodbc" not in source and "\nfrom pyodbc" not in source, module.name
    assert rendered_scripts("jobworker")  # the SQL side needs no driver
