"""The worker registry in the file: a row per live process, refreshed by its heartbeat."""

from __future__ import annotations

from jobworker.clock import Clock
from jobworker.models import WorkerInfo
from jobworker.storage.database_clock import keep_synced
from jobworker.storage.sqlite.connection import Database
from jobworker.storage.sqlite.values import VALUES
from jobworker.storage.worker_rows import json_queues, queues_json, worker_info

__all__ = ["SQLiteWorkers"]


class SQLiteWorkers:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def register(self, info: WorkerInfo) -> None:
        await keep_synced(self._clock)
        params = {
            "id": info.id,
            "parent": info.parent,
            "host": info.host,
            "pid": info.pid,
            "role": info.role.value,
            "module": info.module,
            "queues": queues_json(info.queues),
            "slots": info.slots,
            "running": info.running,
            "started_at": info.started_at.timestamp(),
            "now": self._clock.now().timestamp(),
        }
        await self._db.write(lambda session: session.execute("register_worker", params))

    async def heartbeat(self, worker_id: str, running: int, figures: str | None = None) -> bool:
        await keep_synced(self._clock)
        now = self._clock.now().timestamp()
        params = {"id": worker_id, "running": running, "figures": figures, "now": now}
        changed = await self._db.write(lambda session: session.execute("worker_heartbeat", params))
        return changed == 1

    async def unregister(self, worker_id: str) -> None:
        params = {"id": worker_id}
        await self._db.write(lambda session: session.execute("unregister_worker", params))

    async def list_workers(self, *, include_gone: bool = True) -> list[WorkerInfo]:
        params = {"include_gone": int(include_gone)}
        rows = await self._db.read(lambda session: session.all("list_workers", params))
        return [worker_info(row, VALUES, json_queues) for row in rows]

    async def live_figures(self, parent: str | None = None) -> list[tuple[str, str]]:
        params = {"parent": parent}
        rows = await self._db.read(lambda session: session.all("live_worker_figures", params))
        return [(row[0], row[1]) for row in rows]

    async def mark_gone(self, stale_after: float) -> int:
        return await self._changes("mark_workers_gone", stale_after)

    async def purge_gone(self, older_than: float) -> int:
        return await self._changes("purge_gone_workers", older_than)

    async def _changes(self, statement: str, seconds: float) -> int:
        await keep_synced(self._clock)
        params = {"before": self._clock.now().timestamp() - seconds}
        changed: int = await self._db.write(lambda session: session.execute(statement, params))
        return changed
