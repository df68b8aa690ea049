"""The maintenance role on PostgreSQL: lease rescue, the continuation sweep and the janitor."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from jobworker.clock import Clock
from jobworker.config import Settings
from jobworker.storage.database_clock import keep_synced
from jobworker.storage.postgres.connection import Database, plain_uuid
from jobworker.storage.postgres.endings import Endings


class PostgresMaintenance:
    def __init__(self, db: Database, settings: Settings, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        self._endings = Endings(db, settings, clock)

    async def leased_job_ids(self, owner: str | None, limit: int = 500) -> list[uuid.UUID]:
        found = await self._db.fetch("leased_job_ids", owner, self._clock.now(), limit)
        return [plain_uuid(row[0]) for row in found]

    async def rescue_expired(
        self, limit: int = 500, seq_floors: Mapping[uuid.UUID, int] | None = None
    ) -> int:
        await keep_synced(self._clock)
        return await self._endings.end_leases(
            None, lost=True, reason="lease expired", seq_floors=seq_floors, limit=limit
        )

    async def resolve_continuations(self, limit: int = 500) -> int:
        parents = [row[0] for row in await self._db.fetch("orphaned_parents", limit)]
        return await self._endings.settle(parents)

    async def purge_expired(self, limit: int = 500) -> int:
        await keep_synced(self._clock)
        return await self._db.execute("purge_expired", self._clock.now(), limit)
