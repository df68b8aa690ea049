"""`SQLiteStorage`: the embedded backend, one object per process whose attributes are its roles.

stdlib sqlite3 on a file in WAL mode, a busy timeout and `BEGIN IMMEDIATE` writes; one
connection per process, used from one dedicated thread (see `connection`). The file creates and
upgrades its own schema when it is opened.
"""

from __future__ import annotations

from jobworker.clock import Clock
from jobworker.config import Settings
from jobworker.storage.database_clock import DatabaseClock, keep_synced
from jobworker.storage.sqlite.catalogue import SQLiteCatalogue
from jobworker.storage.sqlite.connection import Database, sqlite_path
from jobworker.storage.sqlite.control import SQLiteControl
from jobworker.storage.sqlite.events import SQLiteEvents, SQLiteLiveRows
from jobworker.storage.sqlite.inspection import SQLiteInspection
from jobworker.storage.sqlite.jobs import SQLiteJobs
from jobworker.storage.sqlite.leadership import SQLiteLeadership
from jobworker.storage.sqlite.maintenance import SQLiteMaintenance
from jobworker.storage.sqlite.recurring import SQLiteRecurring
from jobworker.storage.sqlite.schema import SQLiteSchema, upgrade
from jobworker.storage.sqlite.workers import SQLiteWorkers

__all__ = ["SQLiteStorage"]


class SQLiteStorage:
    dialect = "sqlite"

    def __init__(
        self, url: str, settings: Settings | None = None, clock: Clock | None = None
    ) -> None:
        self.url = url
        self.path = sqlite_path(url)
        self.settings = settings or Settings()
        db = Database(self.path, self.settings, prepare=upgrade)
        self._db = db
        self.clock: Clock = clock if clock is not None else DatabaseClock(db.database_now)
        self.schema = SQLiteSchema(db)
        clock = self.clock
        self.jobs = SQLiteJobs(db, self.settings, clock)
        self.control = SQLiteControl(db, self.settings, clock)
        self.inspection = SQLiteInspection(db)
        self.events = SQLiteEvents(db)
        self.live = SQLiteLiveRows(db, self.settings)
        self.maintenance = SQLiteMaintenance(db, self.settings, clock)
        self.recurring = SQLiteRecurring(db, clock)
        self.leadership = SQLiteLeadership(db, clock)
        self.workers = SQLiteWorkers(db, clock)
        self.catalogue = SQLiteCatalogue(db, clock)

    async def open(self) -> None:
        """Connect; a new file gets its schema, an older one its migrations."""
        await self._db.open()
        await keep_synced(self.clock)

    async def close(self) -> None:
        await self._db.close()
