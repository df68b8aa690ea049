"""The database's own leader lease on PostgreSQL: a session-level advisory lock."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

from jobworker.clock import Clock
from jobworker.models import LeaseTerm
from jobworker.storage.postgres.connection import Database


class AdvisoryLease:
    """`pg_try_advisory_lock` on a dedicated, unpooled connection: held as long as that session
    lives, released by the server the moment it ends (a dead leader needs no TTL to pass)."""

    mechanism = "postgres-advisory-lock"

    def __init__(self, db: Database, clock: Clock, name: str, holder: str) -> None:
        self._db = db
        self._clock = clock
        self._name = name
        self._holder = holder
        self._lock_key = f"{db.schema}:leader:{name}"
        self._conn: Any = None
        self.term: LeaseTerm | None = None

    async def acquire(self) -> bool:
        if self._conn is None or self._conn.is_closed():
            self._conn = await self._db.connect()
        if not await self._db.fetchval("lease_try_lock", self._lock_key, conn=self._conn):
            return False
        term = LeaseTerm(
            holder=self._holder,
            since=self._clock.now(),
            mechanism=self.mechanism,
            token=uuid.uuid4().hex,
        )
        await self._db.execute(
            "lease_record_term",
            lease=self._name,
            holder=term.holder,
            token=term.token,
            since=term.since,
            conn=self._conn,
        )
        self.term = term
        return True

    async def renew(self) -> bool:
        """The lock lives with the session: the lease holds while the connection answers."""
        if self.term is None or self._conn is None:
            return False
        try:
            await asyncio.wait_for(self._conn.fetchval("SELECT 1"), 5)
        except Exception:
            self.term = None
            with contextlib.suppress(Exception):
                self._conn.terminate()
            self._conn = None
            return False
        return True

    async def release(self) -> None:
        if self.term is not None and self._conn is not None:
            with contextlib.suppress(Exception):
                await self._db.fetchval("lease_unlock", self._lock_key, conn=self._conn)
        self.term = None

    async def current(self) -> LeaseTerm | None:
        row = await self._db.fetchrow("lease_current", self._name, self._lock_key)
        if row is None:
            return None
        return LeaseTerm(holder=row[0], token=row[1], since=row[2], mechanism=self.mechanism)

    async def close(self) -> None:
        await self.release()
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 5)
