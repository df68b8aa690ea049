"""What follows a job's end, shared by the roles that end jobs: its continuations are settled,
and leases are ended for an owner that stops or dies, or because they expired."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from jobworker.clock import Clock
from jobworker.config import Settings
from jobworker.storage.postgres.connection import Database


class Endings:
    def __init__(self, db: Database, settings: Settings, clock: Clock) -> None:
        self._db = db
        self._result_ttl = settings.result_ttl
        self._clock = clock

    async def settle(self, parents: Sequence[uuid.UUID], *, conn: Any = None) -> int:
        """Promote or cancel the continuations of jobs that have just ended. A statement of its
        own on purpose: it must see continuations committed while the parent's row was locked by
        the statement that ended it. If this process dies first, the maintenance sweep
        (`resolve_continuations`) settles them. On `conn` (a transaction that enqueues
        continuations), readers are not notified: the enqueue is not committed yet."""
        if not parents:
            return 0
        count, changed = await self._db.fetchrow(
            "settle_continuations",
            parents=list(parents),
            now=self._clock.now(),
            default_ttl=self._result_ttl,
            channel=self._db.jobs_channel,
            conn=conn,
        )
        if conn is None:
            await self._db.notify_events(changed or [])
        return int(count or 0)

    async def end_leases(
        self,
        owner: str | None,
        *,
        lost: bool,
        reason: str,
        seq_floors: Mapping[uuid.UUID, int] | None,
        limit: int,
    ) -> int:
        """End the leases of `owner`, or (owner None) every expired one; see `Jobs.release_owner`
        for what `lost` and `seq_floors` mean."""
        floors = dict(seq_floors or {})
        ended = await self._db.fetch(
            "end_leases",
            owner=owner,
            now=self._clock.now(),
            lost=lost,
            reason=reason,
            limit=limit,
            default_ttl=self._result_ttl,
            floor_ids=list(floors),
            floor_seqs=list(floors.values()),
        )
        await self._db.notify_events([row[0] for row in ended])
        await self.settle([row[0] for row in ended if row[1]])
        return len(ended)
