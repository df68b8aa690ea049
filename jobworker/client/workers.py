"""The client's view of the worker registry: every supervisor, worker process and beat."""

from __future__ import annotations

import builtins

import msgspec

from jobworker.client.recurring import RecurringAdmin
from jobworker.models import WorkerInfo, WorkerRole
from jobworker.portal import Blocking


class WorkerRegistry(RecurringAdmin):
    """The processes that serve jobs, as their rows in the database say."""

    async def aworkers(self, *, include_gone: bool = True) -> builtins.list[WorkerInfo]:
        """Every registered process, by host, then start time; with `include_gone`, also those
        whose heartbeat went stale (killed, or stalled), until the janitor purges them.

        A supervisor's `running` is the sum of its live worker processes' (it runs no job
        itself); its `slots` are its processes times their slots."""
        storage = await self._storage()
        rows = await storage.workers.list_workers(include_gone=include_gone)
        running: dict[str, int] = {}
        for row in rows:
            if row.parent is not None and not row.gone:
                running[row.parent] = running.get(row.parent, 0) + row.running
        return [
            msgspec.structs.replace(row, running=running.get(row.id, 0))
            if row.role is WorkerRole.SUPERVISOR
            else row
            for row in rows
        ]

    workers = Blocking(aworkers)
