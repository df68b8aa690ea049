"""The maintenance role: lease rescue, the continuations repair sweep, and the janitor. The
status changes of the sweeps are stored as events in the same transaction."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from jobworker.clock import Clock
from jobworker.storage.database_clock import keep_synced
from jobworker.storage.sqlserver.attempts import AttemptEnds
from jobworker.storage.sqlserver.queries import Queries
from jobworker.storage.sqlserver.values import to_uuid, ts
from jobworker.storage.sqlserver.writes import EventWriter

__all__ = ["SQLServerMaintenance"]


class SQLServerMaintenance:
    def __init__(
        self, queries: Queries, writer: EventWriter, clock: Clock, result_ttl: float
    ) -> None:
        self._queries = queries
        self._writer = writer
        self._clock = clock
        self._result_ttl = result_ttl
        self._ends = AttemptEnds(writer, queries, clock, result_ttl)

    async def leased_job_ids(self, owner: str | None, limit: int = 500) -> list[uuid.UUID]:
        if limit <= 0:
            return []
        rows = await self._queries.rows(
            "leased_job_ids",
            expired=owner is None,
            owner=owner or "",
            now=ts(self._clock.now()),
            limit=limit,
        )
        return [to_uuid(row[0]) for row in rows]

    async def rescue_expired(
        self, limit: int = 500, seq_floors: Mapping[uuid.UUID, int] | None = None
    ) -> int:
        await keep_synced(self._clock)
        if limit <= 0:
            return 0
        return await self._ends.end_leases(
            expired=True,
            owner="",
            lost=True,
            reason="lease expired",
            limit=limit,
            seq_floors=seq_floors,
        )

    async def resolve_continuations(self, limit: int = 500) -> int:
        if limit <= 0:
            return 0
        [(settled,)] = await self._writer.run_changing(
            "resolve_continuations",
            self._clock.now(),
            limit=limit,
            default_ttl=self._result_ttl,
        )
        return int(settled)

    async def purge_expired(self, limit: int = 500) -> int:
        await keep_synced(self._clock)
        if limit <= 0:
            return 0
        deleted = await self._queries.scalar(
            "purge_expired", now=ts(self._clock.now()), limit=limit
        )
        return int(deleted)
