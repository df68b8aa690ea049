"""The sweeps that keep the file healthy: lease rescue, continuations, the janitor."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from jobworker.clock import Clock
from jobworker.config import Settings
from jobworker.models import JobStatus
from jobworker.storage.database_clock import keep_synced
from jobworker.storage.rows import read_each, report
from jobworker.storage.sqlite.attempts import end_leases
from jobworker.storage.sqlite.connection import Database, Session
from jobworker.storage.sqlite.values import VALUES
from jobworker.storage.sqlite.writes import settle_awaiting

__all__ = ["SQLiteMaintenance"]


class SQLiteMaintenance:
    def __init__(self, db: Database, settings: Settings, clock: Clock) -> None:
        self._db = db
        self._settings = settings
        self._clock = clock

    async def leased_job_ids(self, owner: str | None, limit: int = 500) -> list[uuid.UUID]:
        params = {"owner": owner, "now": self._clock.now().timestamp(), "limit": limit}
        rows = await self._db.read(lambda session: session.all("leased_job_ids", params))
        ids, unreadable = read_each(rows, lambda row: VALUES.to_uuid(row[0]))
        report(unreadable, "lease rescue")  # ended by rescue_expired, which reads its rows whole
        return ids

    async def rescue_expired(
        self, limit: int = 500, seq_floors: Mapping[uuid.UUID, int] | None = None
    ) -> int:
        await keep_synced(self._clock)
        floors = {str(job_id): seq for job_id, seq in (seq_floors or {}).items()}

        def rescue(session: Session) -> int:
            now = self._clock.now().timestamp()
            return end_leases(
                session,
                "expired_leases",
                {"now": now, "limit": limit},
                lost=True,
                reason="lease expired",
                seq_floors=floors,
                now=now,
                default_ttl=self._settings.result_ttl,
            )

        return await self._db.write(rescue)

    async def resolve_continuations(self, limit: int = 500) -> int:
        def resolve(session: Session) -> int:
            rows = session.all("orphaned_continuations", {"limit": limit})
            now = self._clock.now().timestamp()
            for child, parent, parent_status in rows:
                status = JobStatus(parent_status) if parent_status else None
                settle_awaiting(session, child, parent, status, now, self._settings.result_ttl)
            return len(rows)

        return await self._db.write(resolve)

    async def purge_expired(self, limit: int = 500) -> int:
        await keep_synced(self._clock)

        def purge(session: Session) -> int:
            params = {"now": self._clock.now().timestamp(), "limit": limit}
            ids = [{"id": row[0]} for row in session.all("expired_job_ids", params)]
            for statement in ("delete_events", "delete_attempts", "delete_job"):
                session.execute_many(statement, ids)
            return len(ids)

        return await self._db.write(purge)
