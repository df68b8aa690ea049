"""Durable job state: the role ports, and `create_storage(url)`, which picks the backend from the
URL's scheme."""

from __future__ import annotations

from jobworker.clock import Clock
from jobworker.config import Settings
from jobworker.display import redact_url
from jobworker.errors import ConfigurationError
from jobworker.storage.ports import (
    Control,
    EnqueueResult,
    EventStore,
    Inspection,
    Jobs,
    JobTypeCatalogue,
    LeaderLease,
    Leadership,
    LiveRows,
    Maintenance,
    Recorded,
    Recurring,
    Schema,
    Storage,
    Subscription,
    Workers,
)

__all__ = [
    "DIALECTS",
    "Control",
    "EnqueueResult",
    "EventStore",
    "Inspection",
    "JobTypeCatalogue",
    "Jobs",
    "LeaderLease",
    "Leadership",
    "LiveRows",
    "Maintenance",
    "Recorded",
    "Recurring",
    "Schema",
    "Storage",
    "Subscription",
    "Workers",
    "create_storage",
    "dialect_of",
    "latest_schema_version",
    "schema_sql",
]

DIALECTS = ("sqlite", "postgres", "sqlserver")

_SCHEMES = {
    "sqlite": "sqlite",
    "postgresql": "postgres",
    "postgres": "postgres",
    "mssql+pyodbc": "sqlserver",
    "mssql": "sqlserver",
}


def dialect_of(url: str) -> str:
    """The backend a database URL selects; a clear error for anything else."""
    scheme, sep, _rest = url.partition("://")
    if not sep:
        raise ConfigurationError(
            f"bad database URL {redact_url(url)!r}: expected sqlite:///file.db, postgresql://... "
            "or mssql+pyodbc://..."
        )
    try:
        return _SCHEMES[scheme.lower()]
    except KeyError:
        known = ", ".join(sorted(_SCHEMES))
        raise ConfigurationError(
            f"bad database URL {redact_url(url)!r}: unknown scheme {redact_url(scheme)!r} "
            f"(known: {known})"
        ) from None


def create_storage(
    url: str,
    settings: Settings | None = None,
    clock: Clock | None = None,
    *,
    application_name: str | None = None,
) -> Storage:
    """A backend for `url`, not yet opened. Drivers are imported only when their backend is used.
    Its times are the database's own (`database_clock`) unless a test gives it a `clock`. A
    server database is told `application_name` by each of its connections (PostgreSQL's
    application_name, SQL Server's APP), unless `url` names one itself."""
    dialect = dialect_of(url)
    if dialect == "sqlite":
        from jobworker.storage.sqlite import SQLiteStorage

        return SQLiteStorage(url, settings, clock)
    if dialect == "postgres":
        from jobworker.storage.postgres import PostgresStorage

        return PostgresStorage(url, settings, clock, application_name=application_name)
    if dialect == "sqlserver":
        from jobworker.storage.sqlserver import SQLServerStorage

        return SQLServerStorage(url, settings, clock, application_name=application_name)
    raise ConfigurationError(f"the {dialect} backend is not available yet in this version")


def latest_schema_version(dialect: str) -> int:
    """The schema version this code expects of a `dialect`'s database: its newest script's."""
    from jobworker.storage.sqlfiles import schema_scripts

    return max(version for version, _name, _text in schema_scripts(dialect))


def schema_sql(dialect: str, schema: str = "jobworker") -> list[tuple[int, str, str]]:
    """(version, file name, SQL) of every schema script of a dialect, ready to run as printed."""
    if dialect == "postgres":
        from jobworker.storage.postgres import rendered_scripts

        return rendered_scripts(schema)
    if dialect == "sqlite":
        from jobworker.storage.sqlfiles import schema_scripts

        return schema_scripts("sqlite")
    if dialect == "sqlserver":
        from jobworker.storage.sqlserver import rendered_scripts as sqlserver_scripts

        return sqlserver_scripts(schema)
    raise ConfigurationError(f"unknown dialect {dialect!r} (known: {', '.join(DIALECTS)})")
