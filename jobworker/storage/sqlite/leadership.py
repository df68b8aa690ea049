"""Beat's leader: a lease row with an expiry (the single writer makes taking it atomic), and the
heartbeat every leader records."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from jobworker.clock import Clock
from jobworker.models import LeaseTerm
from jobworker.recurring import BEAT_LEASE, BeatLeader
from jobworker.storage.ports import LeaderLease
from jobworker.storage.rows import beat_leader
from jobworker.storage.sqlite.connection import Database
from jobworker.storage.sqlite.values import VALUES, from_timestamp

__all__ = ["LeaseRow", "SQLiteLeadership"]


class LeaseRow:
    """A leader lease as a row of `leader_leases`, held until its expiry unless renewed."""

    mechanism = "sqlite-lease"

    def __init__(self, db: Database, clock: Clock, name: str, holder: str, ttl: float) -> None:
        self._db = db
        self._clock = clock
        self._name = name
        self._holder = holder
        self._ttl = ttl
        self.term: LeaseTerm | None = None

    def _params(self, token: str) -> dict[str, Any]:
        now = self._clock.now().timestamp()
        return {
            "name": self._name,
            "holder": self._holder,
            "token": token,
            "now": now,
            "until": now + self._ttl,
        }

    async def _changes(self, statement: str, params: dict[str, Any]) -> bool:
        changed = await self._db.write(lambda session: session.execute(statement, params))
        return bool(changed)

    async def acquire(self) -> bool:
        params = self._params(uuid.uuid4().hex)
        if not await self._changes("lease_acquire", params):
            return False
        self.term = LeaseTerm(
            holder=self._holder,
            since=from_timestamp(params["now"]),
            mechanism=self.mechanism,
            token=params["token"],
        )
        return True

    async def renew(self) -> bool:
        if self.term is None:
            return False
        if not await self._changes("lease_renew", self._params(self.term.token)):
            self.term = None
            return False
        return True

    async def release(self) -> None:
        if self.term is not None:
            await self._changes("lease_release", self._params(self.term.token))
        self.term = None

    async def current(self) -> LeaseTerm | None:
        params = self._params("")
        row = await self._db.read(lambda session: session.one("lease_current", params))
        if row is None:
            return None
        return LeaseTerm(
            holder=row[0], token=row[1], since=from_timestamp(row[2]), mechanism=self.mechanism
        )

    async def close(self) -> None:
        return None


class SQLiteLeadership:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    def leader_lease(self, name: str, holder: str, ttl: float) -> LeaderLease:
        return LeaseRow(self._db, self._clock, name, holder, ttl)

    async def record_beat_leader(self, name: str, term: LeaseTerm, expires_at: datetime) -> None:
        params = {
            "name": name,
            "holder": term.holder,
            "mechanism": term.mechanism,
            "token": term.token,
            "since": term.since.timestamp(),
            "now": self._clock.now().timestamp(),
            "expires_at": expires_at.timestamp(),
        }
        await self._db.write(lambda session: session.execute("record_beat_leader", params))

    async def clear_beat_leader(self, name: str, token: str) -> None:
        params = {"name": name, "token": token}
        await self._db.write(lambda session: session.execute("clear_beat_leader", params))

    async def beat_leader(self, name: str = BEAT_LEASE) -> BeatLeader | None:
        params = {"name": name, "now": self._clock.now().timestamp()}
        row = await self._db.read(lambda session: session.one("beat_leader", params))
        return None if row is None else beat_leader(row, VALUES)
