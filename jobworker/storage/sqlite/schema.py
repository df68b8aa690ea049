"""The schema: one baseline script stating it whole, then numbered migrations after it. The
embedded backend creates and upgrades its own file whenever a connection opens (`upgrade`)."""

from __future__ import annotations

import sqlite3

from jobworker.errors import SchemaMissingError
from jobworker.storage.sqlfiles import schema_scripts
from jobworker.storage.sqlite.connection import Database, Session

__all__ = ["BASELINE_VERSION", "SCHEMA_VERSION", "SQLiteSchema", "current_version", "upgrade"]

_SCRIPTS = schema_scripts("sqlite")
# The baseline is the first script; a file older than it was made by an unreleased version.
BASELINE_VERSION = _SCRIPTS[0][0]
# The newest script's version: what a file is upgraded to when it is opened.
SCHEMA_VERSION = _SCRIPTS[-1][0]


def current_version(session: Session) -> int:
    """The file's schema version; 0 for a file without jobworker's tables."""
    try:
        version = session.scalar("schema_version")
    except sqlite3.OperationalError:  # no jobworker_schema table
        return 0
    return int(version or 0)


def _refuse_before_baseline(path: str, version: int) -> int:
    if 0 < version < BASELINE_VERSION:
        raise SchemaMissingError(
            f"the SQLite database {path} has schema version {version}, written by an unreleased "
            f"development version of jobworker; this version starts from schema "
            f"{BASELINE_VERSION} and cannot upgrade it. Move the file aside (for example to "
            f"{path}.old): a new one is created when jobworker next opens {path}."
        )
    return version


def upgrade(session: Session) -> list[int]:
    """Create a new file's schema, or apply the migrations its version lacks; returns the
    versions applied. A file older than the baseline is refused before anything is written."""
    if _refuse_before_baseline(session.path, current_version(session)) >= SCHEMA_VERSION:
        return []
    with session.migration_lock():
        current = _refuse_before_baseline(session.path, current_version(session))
        applied = []
        for version, _name, text in _SCRIPTS:
            if version > current:
                session.script(text)
                applied.append(version)
        return applied


class SQLiteSchema:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def migrate(self) -> list[int]:
        return await self._db.read(upgrade)

    async def version(self) -> int:
        return await self._db.read(current_version)

    async def check_schema(self) -> None:
        version = _refuse_before_baseline(self._db.path, await self._db.read(current_version))
        if version < SCHEMA_VERSION:
            raise SchemaMissingError(
                f"SQLite database {self._db.path} has schema version {version}"
            )
