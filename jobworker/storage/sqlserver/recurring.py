"""The recurring role: beat's recurring definitions and their fires."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from jobworker.clock import Clock
from jobworker.models import NewJob
from jobworker.recurring import RecurringJob, RecurringSpec
from jobworker.storage.ports import EnqueueResult
from jobworker.storage.rows import recurring_job
from jobworker.storage.sqlserver.queries import Queries
from jobworker.storage.sqlserver.values import VALUES, job_fields, json, to_uuid, ts

__all__ = ["SQLServerRecurring"]


class SQLServerRecurring:
    def __init__(self, queries: Queries, clock: Clock) -> None:
        self._queries = queries
        self._clock = clock

    async def upsert_recurring(self, specs: Sequence[RecurringSpec]) -> None:
        if not specs:
            return
        sent = [
            {
                "name": spec.name,
                "job_type": spec.job_type,
                "cron": spec.cron,
                "timezone": spec.timezone,
                "args": spec.args.decode("utf-8"),
            }
            for spec in specs
        ]
        await self._queries.rows("upsert_recurring", specs=json(sent), now=ts(self._clock.now()))

    async def list_recurring(self) -> list[RecurringJob]:
        return [recurring_job(row, VALUES) for row in await self._queries.rows("list_recurring")]

    async def set_recurring_enabled(self, name: str, enabled: bool) -> bool:
        changed = await self._queries.scalar(
            "set_recurring_enabled",
            recurring_name=name,
            enabled=enabled,
            now=ts(self._clock.now()),
        )
        return int(changed) == 1

    async def fire_recurring(
        self, name: str, instant: datetime, next_fire_at: datetime, job: NewJob
    ) -> EnqueueResult | None:
        fired, created, job_id = await self._queries.row(
            "fire_recurring",
            retry=False,
            recurring_name=name,
            instant=ts(instant),
            next_fire_at=ts(next_fire_at),
            job=json(job_fields(job)),
        )
        if not fired:
            return None
        return EnqueueResult(to_uuid(job_id), created=bool(created))

    async def advance_recurring(self, name: str, next_fire_at: datetime) -> None:
        await self._queries.rows(
            "advance_recurring", recurring_name=name, next_fire_at=ts(next_fire_at)
        )
