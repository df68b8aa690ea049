"""The leadership role on PostgreSQL: the advisory-lock leader lease, and the beat leader's
heartbeat every leader records (whatever its lease)."""

from __future__ import annotations

from datetime import datetime

from jobworker.clock import Clock
from jobworker.config import Settings
from jobworker.models import LeaseTerm
from jobworker.recurring import BEAT_LEASE, BeatLeader
from jobworker.storage.ports import LeaderLease
from jobworker.storage.postgres.connection import VALUES, Database
from jobworker.storage.postgres.leader_lease import AdvisoryLease
from jobworker.storage.rows import beat_leader


class PostgresLeadership:
    def __init__(self, db: Database, settings: Settings, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    def leader_lease(self, name: str, holder: str, ttl: float) -> LeaderLease:
        return AdvisoryLease(self._db, self._clock, name, holder)

    async def record_beat_leader(self, name: str, term: LeaseTerm, expires_at: datetime) -> None:
        await self._db.execute(
            "record_beat_leader",
            lease=name,
            holder=term.holder,
            mechanism=term.mechanism,
            token=term.token,
            since=term.since,
            now=self._clock.now(),
            expires_at=expires_at,
        )

    async def clear_beat_leader(self, name: str, token: str) -> None:
        await self._db.execute("clear_beat_leader", name, token)

    async def beat_leader(self, name: str = BEAT_LEASE) -> BeatLeader | None:
        row = await self._db.fetchrow("beat_leader", name, self._clock.now())
        return None if row is None else beat_leader(row, VALUES)
