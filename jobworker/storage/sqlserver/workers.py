"""The worker registry: a row per live process, refreshed by its heartbeat."""

from __future__ import annotations

from datetime import timedelta

from jobworker.clock import Clock
from jobworker.models import WorkerInfo
from jobworker.storage.database_clock import keep_synced
from jobworker.storage.sqlserver.queries import Queries
from jobworker.storage.sqlserver.values import VALUES, ts
from jobworker.storage.worker_rows import json_queues, queues_json, worker_info

__all__ = ["SQLServerWorkers"]


class SQLServerWorkers:
    def __init__(self, queries: Queries, clock: Clock) -> None:
        self._queries = queries
        self._clock = clock

    async def register(self, info: WorkerInfo) -> None:
        await keep_synced(self._clock)
        await self._queries.rows(
            "register_worker",
            id=info.id,
            parent=info.parent or "",
            host=info.host,
            pid=info.pid,
            role=info.role.value,
            module=info.module,
            queues=queues_json(info.queues),
            slots=info.slots,
            running=info.running,
            started_at=ts(info.started_at),
            now=ts(self._clock.now()),
        )

    async def heartbeat(self, worker_id: str, running: int, figures: str | None = None) -> bool:
        await keep_synced(self._clock)
        changed = await self._queries.scalar(
            "worker_heartbeat",
            id=worker_id,
            running=running,
            figures=figures or "",
            now=ts(self._clock.now()),
        )
        return int(changed) == 1

    async def live_figures(self, parent: str | None = None) -> list[tuple[str, str]]:
        rows = await self._queries.rows("live_worker_figures", parent=parent or "")
        return [(row[0], row[1]) for row in rows]

    async def unregister(self, worker_id: str) -> None:
        await self._queries.rows("unregister_worker", id=worker_id)

    async def list_workers(self, *, include_gone: bool = True) -> list[WorkerInfo]:
        rows = await self._queries.rows("list_workers", include_gone=include_gone)
        return [worker_info(row, VALUES, json_queues) for row in rows]

    async def mark_gone(self, stale_after: float) -> int:
        await keep_synced(self._clock)
        before = self._clock.now() - timedelta(seconds=stale_after)
        return int(await self._queries.scalar("mark_workers_gone", before=ts(before)))

    async def purge_gone(self, older_than: float) -> int:
        await keep_synced(self._clock)
        before = self._clock.now() - timedelta(seconds=older_than)
        return int(await self._queries.scalar("purge_gone_workers", before=ts(before)))
