"""The leadership role: the database's own leader lease, and the heartbeat every leader
records."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from jobworker.clock import Clock
from jobworker.models import LeaseTerm
from jobworker.recurring import BEAT_LEASE, BeatLeader
from jobworker.storage.ports import LeaderLease
from jobworker.storage.rows import beat_leader
from jobworker.storage.sqlserver.lease import AppLockLease
from jobworker.storage.sqlserver.queries import Queries
from jobworker.storage.sqlserver.values import VALUES, ts

__all__ = ["SQLServerLeadership"]


class SQLServerLeadership:
    def __init__(
        self, queries: Queries, clock: Clock, schema_name: str, lease_queries: Callable[[], Queries]
    ) -> None:
        self._queries = queries
        self._clock = clock
        self._schema_name = schema_name
        self._lease_queries = lease_queries

    def leader_lease(self, name: str, holder: str, ttl: float) -> LeaderLease:
        return AppLockLease(
            own=self._lease_queries(),
            shared=self._queries,
            clock=self._clock,
            resource=f"jobworker.leader.{self._schema_name}.{name}",
            name=name,
            holder=holder,
            ttl=ttl,
        )

    async def record_beat_leader(self, name: str, term: LeaseTerm, expires_at: datetime) -> None:
        await self._queries.rows(
            "record_beat_leader",
            lease_name=name,
            holder=term.holder,
            mechanism=term.mechanism,
            token=term.token,
            since=ts(term.since),
            now=ts(self._clock.now()),
            expires_at=ts(expires_at),
        )

    async def clear_beat_leader(self, name: str, token: str) -> None:
        await self._queries.rows("clear_beat_leader", lease_name=name, token=token)

    async def beat_leader(self, name: str = BEAT_LEASE) -> BeatLeader | None:
        rows = await self._queries.rows("beat_leader", lease_name=name, now=ts(self._clock.now()))
        return beat_leader(rows[0], VALUES) if rows else None
