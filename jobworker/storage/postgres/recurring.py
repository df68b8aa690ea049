"""The recurring role on PostgreSQL: beat's recurring definitions and their fires."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from jobworker.clock import Clock
from jobworker.config import Settings
from jobworker.models import NewJob
from jobworker.recurring import RecurringJob, RecurringSpec
from jobworker.storage.ports import EnqueueResult
from jobworker.storage.postgres.connection import VALUES, Database
from jobworker.storage.postgres.jobs import insert_jobs
from jobworker.storage.rows import recurring_job


class PostgresRecurring:
    def __init__(self, db: Database, settings: Settings, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def upsert_recurring(self, specs: Sequence[RecurringSpec]) -> None:
        if not specs:
            return
        await self._db.execute(
            "upsert_recurring",
            names=[spec.name for spec in specs],
            job_types=[spec.job_type for spec in specs],
            crons=[spec.cron for spec in specs],
            timezones=[spec.timezone for spec in specs],
            job_args=[spec.args for spec in specs],
            now=self._clock.now(),
        )

    async def list_recurring(self) -> list[RecurringJob]:
        return [recurring_job(row, VALUES) for row in await self._db.fetch("list_recurring")]

    async def set_recurring_enabled(self, name: str, enabled: bool) -> bool:
        changed = await self._db.execute("set_recurring_enabled", name, enabled, self._clock.now())
        return changed == 1

    async def fire_recurring(
        self, name: str, instant: datetime, next_fire_at: datetime, job: NewJob
    ) -> EnqueueResult | None:
        async with self._db.acquire() as conn, conn.transaction():
            if (
                await self._db.execute("fire_recurring", name, instant, next_fire_at, conn=conn)
                != 1
            ):
                return None
            (result,) = await insert_jobs(self._db, conn, [job], text_json=False)
            return result

    async def advance_recurring(self, name: str, next_fire_at: datetime) -> None:
        await self._db.execute("advance_recurring", name, next_fire_at)
