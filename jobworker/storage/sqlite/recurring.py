"""Beat's recurring definitions and their fires."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import msgspec

from jobworker.clock import Clock
from jobworker.models import NewJob
from jobworker.recurring import RecurringJob, RecurringSpec
from jobworker.storage.ports import EnqueueResult
from jobworker.storage.rows import recurring_job
from jobworker.storage.sqlite.connection import Database, Session
from jobworker.storage.sqlite.values import VALUES, job_row
from jobworker.storage.sqlite.writes import insert_job

__all__ = ["SQLiteRecurring"]


class SQLiteRecurring:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def upsert_recurring(self, specs: Sequence[RecurringSpec]) -> None:
        now = self._clock.now().timestamp()
        rows = [{**msgspec.structs.asdict(spec), "now": now} for spec in specs]
        await self._db.write(lambda session: session.execute_many("upsert_recurring", rows))

    async def list_recurring(self) -> list[RecurringJob]:
        rows = await self._db.read(lambda session: session.all("list_recurring"))
        return [recurring_job(row, VALUES) for row in rows]

    async def set_recurring_enabled(self, name: str, enabled: bool) -> bool:
        params = {"name": name, "enabled": int(enabled), "now": self._clock.now().timestamp()}
        changed = await self._db.write(
            lambda session: session.execute("set_recurring_enabled", params)
        )
        return bool(changed == 1)

    async def fire_recurring(
        self, name: str, instant: datetime, next_fire_at: datetime, job: NewJob
    ) -> EnqueueResult | None:
        params = {
            "name": name,
            "instant": instant.timestamp(),
            "next_fire_at": next_fire_at.timestamp(),
        }
        row = job_row(job)

        def fire(session: Session) -> EnqueueResult | None:
            if session.execute("fire_recurring", params) != 1:
                return None  # this instant was fired already
            return insert_job(session, row)

        return await self._db.write(fire)

    async def advance_recurring(self, name: str, next_fire_at: datetime) -> None:
        params = {"name": name, "next_fire_at": next_fire_at.timestamp()}
        await self._db.write(lambda session: session.execute("advance_recurring", params))
