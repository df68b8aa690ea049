"""PostgreSQL storage on an asyncpg pool: one module per role, all sharing one `Database`.

asyncpg prepares and caches each statement per connection. The schema is the user's: `jobworker
migrate` applies it; a worker never migrates on its own.
"""

from __future__ import annotations

from jobworker.clock import Clock
from jobworker.config import Settings
from jobworker.storage.database_clock import DatabaseClock, keep_synced
from jobworker.storage.postgres.catalogue import PostgresCatalogue
from jobworker.storage.postgres.connection import Database
from jobworker.storage.postgres.control import PostgresControl
from jobworker.storage.postgres.events import PostgresEvents, PostgresLive
from jobworker.storage.postgres.inspection import PostgresInspection
from jobworker.storage.postgres.jobs import PostgresJobs
from jobworker.storage.postgres.leadership import PostgresLeadership
from jobworker.storage.postgres.maintenance import PostgresMaintenance
from jobworker.storage.postgres.recurring import PostgresRecurring
from jobworker.storage.postgres.schema import PostgresSchema, rendered_scripts
from jobworker.storage.postgres.workers import PostgresWorkers

__all__ = ["PostgresStorage", "rendered_scripts"]


class PostgresStorage:
    """The backend's roles over one connection pool, opened by `open`."""

    dialect = "postgres"

    def __init__(
        self,
        url: str,
        settings: Settings | None = None,
        clock: Clock | None = None,
        *,
        application_name: str | None = None,
    ) -> None:
        settings = settings or Settings(database_url=url)
        self._db = Database(url, settings, application_name)
        self.clock: Clock = clock if clock is not None else DatabaseClock(self._db.database_now)
        clock = self.clock
        self.schema = PostgresSchema(self._db, settings, clock)
        self.jobs = PostgresJobs(self._db, settings, clock)
        self.control = PostgresControl(self._db, settings, clock)
        self.inspection = PostgresInspection(self._db, settings, clock)
        self.events = PostgresEvents(self._db, settings, clock)
        self.live = PostgresLive(self._db, settings, clock)
        self.maintenance = PostgresMaintenance(self._db, settings, clock)
        self.recurring = PostgresRecurring(self._db, settings, clock)
        self.leadership = PostgresLeadership(self._db, settings, clock)
        self.workers = PostgresWorkers(self._db, clock)
        self.catalogue = PostgresCatalogue(self._db, clock)

    async def open(self) -> None:
        await self._db.open()
        await keep_synced(self.clock)

    async def close(self) -> None:
        await self._db.close()
