"""What follows a job's end, shared by the roles that end jobs: its continuations are settled,
and leases are ended for an owner that stops or dies, or because they expired."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from jobworker.clock import Clock
from jobworker.config import Settings
from jobworker.storage.postgres.connection import Database
from jobworker.storage.postgres.event_rows import store_changes


class Endings:
    def __init__(self, db: Database, settings: Settings, clock: Clock) -> None:
        self._db = db
        self._result_ttl = settings.result_ttl
        self._clock = clock

    async def settle(
        self, parents: Sequence[uuid.UUID], *, conn: Any = None, text_json: bool = False
    ) -> int:
        """Promote or cancel the continuations of jobs that have just ended, storing the
        lifecycle event of each change in the same transaction. Statements of their own on
        purpose: they must see continuations committed while the parent's row was locked by the
        statement that ended it. If this process dies first, the maintenance sweep
        (`resolve_continuations`) settles them. On `conn`, in the caller's transaction (one that
        enqueues continuations; `text_json`: the caller's own connection, see `insert_jobs`)."""
        if not parents:
            return 0
        now = self._clock.now()

        async def settle(conn: Any) -> int:
            changed = await self.continuations(conn, parents, now)
            return await store_changes(self._db, changed, now, conn=conn, text_json=text_json)

        if conn is not None:
            return await settle(conn)
        # Safe to repeat: a second run finds them settled and changes nothing.
        return await self._db.in_transaction(settle)

    async def continuations(
        self, conn: Any, parents: Sequence[uuid.UUID], now: datetime
    ) -> list[Any]:
        """Settle the continuations of `parents` on `conn` (a transaction) at `now`, without
        their events: the changed jobs, for `store_changes`."""
        changed: list[Any] = await self._db.fetch(
            "settle_continuations",
            parents=list(parents),
            now=now,
            default_ttl=self._result_ttl,
            channel=self._db.jobs_channel,
            conn=conn,
        )
        return changed

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
