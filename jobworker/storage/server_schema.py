"""What the server backends (PostgreSQL, SQL Server) share about their schema: the schema name
filled into their SQL, the version check's message, and URLs fit for messages."""

from __future__ import annotations

from collections.abc import Callable

from jobworker.errors import SchemaMissingError
from jobworker.storage.base import SCHEMA_TOKEN
from jobworker.storage.sqlfiles import schema_scripts


def render(sql: str, quoted_schema: str) -> str:
    """`sql` with the schema token replaced by the (already quoted) schema name."""
    return sql.replace(SCHEMA_TOKEN, quoted_schema)


def rendered_scripts(
    dialect: str, quote: Callable[[str], str], schema: str
) -> list[tuple[int, str, str]]:
    """(version, file name, SQL) of a dialect's schema scripts with the schema filled in: what
    `jobworker migrate` runs and `jobworker sql` prints."""
    quoted = quote(schema)
    return [(v, name, render(text, quoted)) for v, name, text in schema_scripts(dialect)]


def latest_version(dialect: str) -> int:
    return max(version for version, _name, _text in schema_scripts(dialect))


def baseline_version(dialect: str) -> int:
    """The version of a dialect's oldest script, its baseline: the schema it states whole."""
    return min(version for version, _name, _text in schema_scripts(dialect))


def check_upgradable(dialect: str, schema: str, current: int) -> None:
    """Raise `SchemaMissingError`, saying what to do, when `current` is a version older than the
    baseline: such a schema was made by a development version that was never released, and no
    script upgrades it."""
    baseline = baseline_version(dialect)
    if 0 < current < baseline:
        raise SchemaMissingError(
            f"the database has schema version {current} (schema {schema!r}), made by an "
            f"unreleased development version of jobworker; this version starts from version "
            f"{baseline} and cannot upgrade it. Drop the schema (its jobs are lost) and run: "
            f"jobworker migrate --database-url ..."
        )


def check_version(dialect: str, schema: str, current: int) -> None:
    """Raise `SchemaMissingError`, saying what to run, unless `current` is the latest version."""
    latest = latest_version(dialect)
    if current < latest:
        state = "has no jobworker schema" if current == 0 else f"has schema version {current}"
        raise SchemaMissingError(
            f"the database {state} (schema {schema!r}; this version needs {latest}); "
            f"run: jobworker migrate --database-url ..."
        )
