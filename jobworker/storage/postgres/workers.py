"""The worker registry on PostgreSQL: a row per live process, refreshed by its heartbeat."""

from __future__ import annotations

from datetime import timedelta

from jobworker.clock import Clock
from jobworker.models import WorkerInfo
from jobworker.storage.database_clock import keep_synced
from jobworker.storage.postgres.connection import VALUES, Database
from jobworker.storage.worker_rows import worker_info

__all__ = ["PostgresWorkers"]


class PostgresWorkers:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def register(self, info: WorkerInfo) -> None:
        await keep_synced(self._clock)
        await self._db.execute(
            "register_worker",
            id=info.id,
            parent=info.parent,
            host=info.host,
            pid=info.pid,
            role=info.role.value,
            module=info.module,
            queues=list(info.queues),
            slots=info.slots,
            running=info.running,
            started_at=info.started_at,
            now=self._clock.now(),
        )

    async def heartbeat(self, worker_id: str, running: int, figures: str | None = None) -> bool:
        await keep_synced(self._clock)
        now = self._clock.now()
        return await self._db.execute("worker_heartbeat", worker_id, running, now, figures) == 1

    async def live_figures(self, parent: str | None = None) -> list[tuple[str, str]]:
        rows = await self._db.fetch("live_worker_figures", parent)
        return [(row[0], row[1]) for row in rows]

    async def unregister(self, worker_id: str) -> None:
        await self._db.execute("unregister_worker", worker_id)

    async def list_workers(self, *, include_gone: bool = True) -> list[WorkerInfo]:
        rows = await self._db.fetch("list_workers", include_gone)
        return [worker_info(row, VALUES, list) for row in rows]

    async def mark_gone(self, stale_after: float) -> int:
        return await self._changes("mark_workers_gone", stale_after)

    async def purge_gone(self, older_than: float) -> int:
        return await self._changes("purge_gone_workers", older_than)

    async def _changes(self, statement: str, seconds: float) -> int:
        await keep_synced(self._clock)
        return await self._db.execute(statement, self._clock.now() - timedelta(seconds=seconds))
