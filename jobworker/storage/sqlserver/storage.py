"""`SQLServerStorage`: the backend's roles over one connection."""

from __future__ import annotations

from datetime import datetime

from jobworker.clock import Clock
from jobworker.config import Settings
from jobworker.display import redact_url
from jobworker.storage.database_clock import DatabaseClock, keep_synced
from jobworker.storage.sqlserver.catalogue import SQLServerCatalogue
from jobworker.storage.sqlserver.connection import Database, import_pyodbc
from jobworker.storage.sqlserver.control import SQLServerControl
from jobworker.storage.sqlserver.events import SQLServerEvents, SQLServerLive
from jobworker.storage.sqlserver.inspection import SQLServerInspection
from jobworker.storage.sqlserver.jobs import SQLServerJobs
from jobworker.storage.sqlserver.leadership import SQLServerLeadership
from jobworker.storage.sqlserver.maintenance import SQLServerMaintenance
from jobworker.storage.sqlserver.queries import Queries
from jobworker.storage.sqlserver.recurring import SQLServerRecurring
from jobworker.storage.sqlserver.schema import SQLServerSchema
from jobworker.storage.sqlserver.statements import quoted_schema, statements
from jobworker.storage.sqlserver.url import odbc_connection_string, with_application_name
from jobworker.storage.sqlserver.values import to_time
from jobworker.storage.sqlserver.workers import SQLServerWorkers
from jobworker.storage.sqlserver.writes import EventWriter

__all__ = ["SQLServerStorage"]


class SQLServerStorage:
    """The roles of `jobworker.storage.ports`, each over the storage's one connection (a
    leader lease has a connection of its own)."""

    dialect = "sqlserver"

    def __init__(
        self,
        url: str,
        settings: Settings | None = None,
        clock: Clock | None = None,
        *,
        application_name: str | None = None,
    ) -> None:
        driver = import_pyodbc()
        settings = settings or Settings(database_url=url)
        schema_name = settings.database_schema
        quoted_schema(schema_name)
        connection_string = with_application_name(odbc_connection_string(url), application_name)
        named = statements(schema_name)

        def database(thread_name: str) -> Database:
            return Database(
                connection_string,
                where=redact_url(url),
                connect_timeout=settings.connect_timeout,
                thread_name=thread_name,
                driver=driver,
            )

        self._database = database("jobworker-sqlserver")
        queries = Queries(self._database, named)

        async def database_now() -> datetime:
            return to_time(await queries.scalar("database_now"))

        self.clock: Clock = clock if clock is not None else DatabaseClock(database_now)
        clock = self.clock
        ttl = settings.result_ttl
        writer = EventWriter(queries, settings.kept_kinds())
        self.schema = SQLServerSchema(queries, schema_name)
        self.jobs = SQLServerJobs(queries, writer, clock, ttl, schema_name)
        self.control = SQLServerControl(queries, writer, clock, ttl)
        self.inspection = SQLServerInspection(queries)
        self.events = SQLServerEvents(queries)
        self.live = SQLServerLive(queries, writer)
        self.maintenance = SQLServerMaintenance(queries, writer, clock, ttl)
        self.recurring = SQLServerRecurring(queries, clock)
        self.leadership = SQLServerLeadership(
            queries,
            clock,
            schema_name,
            lease_queries=lambda: Queries(database("jobworker-applock"), named),
        )
        self.workers = SQLServerWorkers(queries, clock)
        self.catalogue = SQLServerCatalogue(queries, clock)

    async def open(self) -> None:
        await self._database.open()
        await keep_synced(self.clock)

    async def close(self) -> None:
        await self._database.close()
