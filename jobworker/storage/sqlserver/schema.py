"""The schema role: `jobworker migrate` and the version check."""

from __future__ import annotations

from jobworker.errors import ConfigurationError
from jobworker.storage.server_schema import check_upgradable, check_version
from jobworker.storage.sqlserver.connection import Session
from jobworker.storage.sqlserver.queries import Queries
from jobworker.storage.sqlserver.statements import DIALECT, rendered_scripts, split_batches

__all__ = ["SQLServerSchema"]


class SQLServerSchema:
    def __init__(self, queries: Queries, schema_name: str) -> None:
        self._queries = queries
        self._schema_name = schema_name

    async def migrate(self) -> list[int]:
        return await self._queries.run(self._migrate)

    async def check_schema(self) -> None:
        current = await self._queries.run(self._version)
        check_upgradable(DIALECT, self._schema_name, current)
        check_version(DIALECT, self._schema_name, current)

    async def version(self) -> int:
        return await self._queries.run(self._version)

    def _version(self, session: Session) -> int:
        if not self._queries.fetch_scalar(session, "schema_table_exists"):
            return 0
        return int(self._queries.fetch_scalar(session, "schema_version") or 0)

    def _migrate(self, session: Session) -> list[int]:
        """Every script not yet applied, batch by batch, in one transaction that holds an
        application lock, so that two migrations of one schema run one after the other. A schema
        older than the baseline is refused before anything is changed."""
        applied: list[int] = []
        with session.transaction():
            resource = f"jobworker.migrate.{self._schema_name}"
            status = self._queries.fetch_scalar(session, "migration_lock", resource=resource)
            if status is None or int(status) < 0:
                raise ConfigurationError(
                    f"could not take the migration lock (sp_getapplock returned {status})"
                )
            current = self._version(session)
            check_upgradable(DIALECT, self._schema_name, current)
            for version, _name, text in rendered_scripts(self._schema_name):
                if version <= current:
                    continue
                for batch in split_batches(text):
                    session.execute(batch)
                applied.append(version)
        return applied
