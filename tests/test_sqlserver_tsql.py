"""Every T-SQL text the SQL Server backend sends, read by a T-SQL grammar (sqlglot's `tsql`
dialect): each batch of the schema scripts (split on GO as `jobworker migrate` splits them) and
each named statement, as they are sent. Any parse error fails, and so does a statement the parser
only keeps as an unparsed command.

sqlglot does not read all of T-SQL. `UNREADABLE` lists the few valid constructs it cannot read,
each with where it occurs and what the test reads in its place; the test checks that each entry
is still needed (sqlglot still fails without it) and used only where listed. A grammar is not an
engine: what the statements do on SQL Server is for the conformance suite on a real server.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import cache

import pytest
import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from jobworker.storage.sqlserver import rendered_scripts, split_batches, statements


@dataclass(frozen=True)
class Unreadable:
    """Valid T-SQL that sqlglot cannot read: where it is, why, and what is read instead."""

    construct: str
    why: str
    pattern: str
    replacement: str
    where: frozenset[str]

    def apply(self, sql: str) -> str:
        return re.sub(self.pattern, self.replacement, sql, flags=re.DOTALL)

    def found_in(self, sql: str) -> bool:
        return re.search(self.pattern, sql, flags=re.DOTALL) is not None


UNREADABLE = (
    Unreadable(
        construct="OUTPUT ... INTO @table (columns)",
        why="sqlglot reads OUTPUT ... INTO a table variable, but not a column list after it",
        pattern=r"(\bINTO\s+@\w+)\s*\([\w\s,]+\)",
        replacement=r"\1",
        where=frozenset({"enqueue", "extend_leases", "end_attempts", "settle_continuations"}),
    ),
    Unreadable(
        construct="IF ... EXEC procedure @a = x, @b = y (no BEGIN ... END)",
        why="sqlglot reads an IF's lone EXEC as an alias and stops at its second argument",
        pattern=r"(\n[ \t]*)(EXEC sp_releaseapplock [^;]*;)",
        replacement=r"\1BEGIN \2 END;",
        where=frozenset({"lease_release"}),
    ),
    Unreadable(
        construct="IF ... BEGIN ... END ELSE IF ...",
        why="sqlglot keeps an ELSE after a BEGIN ... END block only as an unparsed command; the "
        "two branches are read as two IFs",
        pattern=r"\bEND\s+ELSE\s+IF\b",
        replacement="END;\nIF",
        where=frozenset({"cancel"}),
    ),
    Unreadable(
        construct="CREATE TRIGGER ... AFTER UPDATE AS",
        why="sqlglot has no CREATE TRIGGER; the trigger's body is read as a procedure's",
        pattern=r"CREATE OR ALTER TRIGGER (\S+)\s+ON\s+\S+\s+AFTER UPDATE\s+AS",
        replacement=r"CREATE OR ALTER PROCEDURE \1 AS",
        where=frozenset({"jobs_record_lifecycle"}),
    ),
    Unreadable(
        construct="a scalar function whose body is more than one RETURN",
        why="sqlglot reads a CREATE FUNCTION body as a single RETURN statement: the statement "
        "(alone in its batch, as T-SQL requires) is not read",
        pattern=r"CREATE OR ALTER FUNCTION .*",
        replacement="",
        where=frozenset({"add_seconds"}),
    ),
)

_ROUTINE = re.compile(r"^CREATE OR ALTER (?:PROCEDURE|FUNCTION|TRIGGER) \[\w+\]\.(\w+)", re.M)


@cache
def sent_texts() -> dict[str, str]:
    """Every text the backend sends to SQL Server, by name: a batch that creates a routine is
    named for it, other batches `<file>#<n>`, named statements by their name."""
    texts = {}
    for _version, file, script in rendered_scripts("jobworker"):
        for n, batch in enumerate(split_batches(script)):
            routine = _ROUTINE.search(batch)
            texts[routine.group(1) if routine else f"{file}#{n}"] = batch
    texts.update({name: statement.sql for name, statement in statements("jobworker").items()})
    return texts


def unread(sql: str) -> str | None:
    """Why sqlglot could not read `sql` (None: it read all of it)."""
    try:
        trees = sqlglot.parse(sql, read="tsql")
    except ParseError as exc:
        return str(exc).splitlines()[0]
    for tree in trees:
        for command in [] if tree is None else tree.find_all(exp.Command):
            return f"kept as an unparsed command: {command.sql('tsql')[:120]!r}"
    return None


def read_as(name: str, sql: str, skip: Unreadable | None = None) -> str:
    """`sql` with the listed constructs found in `name` replaced (all but `skip`)."""
    for entry in UNREADABLE:
        if name in entry.where and entry is not skip:
            sql = entry.apply(sql)
    return sql


@pytest.fixture(autouse=True)
def _quiet_sqlglot(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="sqlglot")  # its fallbacks are failures here anyway


@pytest.mark.parametrize("name", sorted(sent_texts()))
def test_the_tsql_grammar_reads_every_batch_and_statement(name: str) -> None:
    assert unread(read_as(name, sent_texts()[name])) is None, name


def test_every_batch_and_statement_is_read() -> None:
    texts = sent_texts()
    assert len(texts) > 40
    assert {name for name in texts if "#" not in name} >= {
        "add_seconds",
        "jobs_record_lifecycle",
        "settle_continuations",
        "claim",
        "end_attempts",
    }


@pytest.mark.parametrize("entry", UNREADABLE, ids=[entry.construct for entry in UNREADABLE])
def test_each_unreadable_construct_is_still_unreadable_where_it_is_listed(
    entry: Unreadable,
) -> None:
    texts = sent_texts()
    assert entry.where <= set(texts), entry.where - set(texts)
    for name in sorted(entry.where):
        sql = texts[name]
        assert entry.found_in(sql), f"{entry.construct} no longer appears in {name}"
        assert unread(read_as(name, sql, skip=entry)) is not None, (
            f"sqlglot now reads {entry.construct} in {name}: remove it from UNREADABLE"
        )
    for name, sql in texts.items():
        if name not in entry.where and entry.found_in(sql):
            assert unread(read_as(name, sql)) is None, name  # read as it is: needs no entry


def test_a_parse_error_and_an_unparsed_command_both_fail() -> None:
    assert unread("SELECT 1 FROM") is not None
    assert unread("CREATE OR ALTER TRIGGER s.t ON s.j AFTER UPDATE AS BEGIN SELECT 1; END;")
    assert unread("SELECT TOP (@n) a FROM s.t WITH (READPAST) ORDER BY a") is None
