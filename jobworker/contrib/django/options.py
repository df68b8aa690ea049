"""The backend's `OPTIONS`, read once: jobworker's settings (the database URL derived from
Django's `DATABASES` where it can be), the Django database whose transactions enqueue waits
for, and what a task's job gets by default."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from django.core.exceptions import ImproperlyConfigured

from jobworker.config import Settings
from jobworker.errors import ConfigurationError

_KNOWN = frozenset({"DATABASE_URL", "DATABASE", "SETTINGS", "MAX_ATTEMPTS", "TASK_MODULES"})
_SQLITE_ENGINES = ("sqlite3", "spatialite")
_POSTGRES_ENGINES = ("postgresql", "postgis", "postgresql_psycopg2")
# The connection parameters of a Django PostgreSQL OPTIONS that asyncpg's URL takes as they are.
_POSTGRES_PARAMS = ("sslmode", "sslrootcert", "sslcert", "sslkey", "passfile")


@dataclass(frozen=True)
class BackendOptions:
    settings: Settings
    database_alias: str | None  # the Django database whose transactions an enqueue waits for
    max_attempts: int
    task_modules: tuple[str, ...]


def read_options(
    alias: str, options: Mapping[str, Any], databases: Mapping[str, Mapping[str, Any]]
) -> BackendOptions:
    """`TASKS[alias]["OPTIONS"]` as `BackendOptions`; every problem is ImproperlyConfigured."""
    unknown = sorted(set(options) - _KNOWN)
    if unknown:
        raise ImproperlyConfigured(
            f"TASKS[{alias!r}]['OPTIONS'] has unknown keys {unknown}; "
            f"the jobworker backend reads {sorted(_KNOWN)}"
        )
    database_alias = options.get("DATABASE", "default")
    url = options.get("DATABASE_URL") or database_url_from(alias, databases, database_alias)
    overrides = dict(options.get("SETTINGS") or {})
    max_attempts = options.get("MAX_ATTEMPTS", 1)
    if not isinstance(max_attempts, int) or isinstance(max_attempts, bool) or max_attempts < 1:
        raise ImproperlyConfigured(
            f"TASKS[{alias!r}]['OPTIONS']['MAX_ATTEMPTS'] must be a whole number >= 1"
        )
    try:
        settings = Settings.load(database_url=url, **overrides)
    except (ConfigurationError, TypeError) as exc:
        raise ImproperlyConfigured(f"TASKS[{alias!r}]['OPTIONS']: {exc}") from None
    return BackendOptions(
        settings=settings,
        database_alias=database_alias if database_alias in databases else None,
        max_attempts=max_attempts,
        task_modules=tuple(options.get("TASK_MODULES", ())),
    )


def database_url_from(
    alias: str, databases: Mapping[str, Mapping[str, Any]], database_alias: str
) -> str:
    """jobworker's URL for Django's database `database_alias`, when it is SQLite (a file) or
    PostgreSQL; anything else needs `OPTIONS["DATABASE_URL"]`."""
    config = databases.get(database_alias)
    engine = str((config or {}).get("ENGINE", ""))
    name = str((config or {}).get("NAME") or "")
    if config is not None and engine.endswith(_SQLITE_ENGINES):
        if name and name != ":memory:" and not name.startswith("file:"):
            return f"sqlite:///{Path(name).resolve()}"
    elif config is not None and engine.endswith(_POSTGRES_ENGINES):
        return _postgres_url(config)
    raise ImproperlyConfigured(
        f"TASKS[{alias!r}]: the jobworker backend cannot derive a database URL from "
        f"DATABASES[{database_alias!r}] (ENGINE {engine or 'missing'!r}, NAME {name!r}): "
        "it derives one from PostgreSQL and from an SQLite file; "
        "set OPTIONS['DATABASE_URL']"
    )


def _postgres_url(config: Mapping[str, Any]) -> str:
    user = quote(str(config.get("USER") or ""), safe="")
    password = quote(str(config.get("PASSWORD") or ""), safe="")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = str(config.get("HOST") or "")
    port = str(config.get("PORT") or "")
    options = config.get("OPTIONS") or {}
    params = {key: str(options[key]) for key in _POSTGRES_PARAMS if key in options}
    if host.startswith("/"):  # a Unix socket directory
        params["host"] = host
        host = ""
    netloc = f"{credentials}{host}{':' + port if port else ''}"
    query = f"?{urlencode(params)}" if params else ""
    return f"postgresql://{netloc}/{quote(str(config.get('NAME') or ''), safe='')}{query}"
