"""The client's administration of recurring jobs (fired by `jobworker beat`)."""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Any

import msgspec

from jobworker.client.enqueue import Enqueueing
from jobworker.definitions import NAME_PATTERN, JobFunction
from jobworker.errors import ConfigurationError
from jobworker.handle import JobHandle
from jobworker.portal import Blocking
from jobworker.recurring import BeatStatus, RecurringJob, RecurringSpec, check_schedule


class RecurringAdmin(Enqueueing):
    """Recurring definitions; running one now is an enqueue."""

    async def aschedule_recurring(
        self,
        name: str,
        cron: str,
        job: str | JobFunction[..., Any],
        args: Mapping[str, Any] | None = None,
        *,
        timezone: str = "UTC",
    ) -> RecurringJob:
        """Add (or update) a recurring definition: `job` with `args` at every fire of `cron` in
        `timezone`. A bad name, expression, zone or argument raises here; nothing is stored."""
        if not NAME_PATTERN.match(name):
            raise ConfigurationError(f"invalid recurring job name {name!r}")
        check_schedule(cron, timezone)
        definition = self.registry.get(job if isinstance(job, str) else job.name)
        spec = RecurringSpec(
            name=name,
            job_type=definition.name,
            cron=cron,
            timezone=timezone,
            args=definition.encode_args(args or {}, self.settings.max_args_bytes),
        )
        storage = await self._storage()
        await storage.recurring.upsert_recurring([spec])
        return await self._recurring(name)

    schedule_recurring = Blocking(aschedule_recurring)

    async def alist_recurring(self) -> builtins.list[RecurringJob]:
        """Every recurring definition, by name."""
        storage = await self._storage()
        return await storage.recurring.list_recurring()

    list_recurring = Blocking(alist_recurring)

    async def aenable_recurring(self, name: str) -> None:
        """Fire it again from its next scheduled time (missed fires are not caught up)."""
        await self._set_recurring_enabled(name, True)

    enable_recurring = Blocking(aenable_recurring)

    async def adisable_recurring(self, name: str) -> None:
        """Stop firing it (beat keeps it disabled across restarts)."""
        await self._set_recurring_enabled(name, False)

    disable_recurring = Blocking(adisable_recurring)

    async def _set_recurring_enabled(self, name: str, enabled: bool) -> None:
        storage = await self._storage()
        if not await storage.recurring.set_recurring_enabled(name, enabled):
            raise ConfigurationError(f"no recurring job named {name!r}")

    async def arun_recurring(self, name: str) -> JobHandle[Any]:
        """Enqueue a recurring definition's job now, once, outside its schedule (its next
        scheduled fire still happens)."""
        record = await self._recurring(name)
        arguments = msgspec.json.decode(record.args)
        (handle,) = await self.aenqueue_definition(
            self.registry.get(record.job_type), [arguments], None
        )
        return handle

    run_recurring = Blocking(arun_recurring)

    async def _recurring(self, name: str) -> RecurringJob:
        for record in await self.alist_recurring():
            if record.name == name:
                return record
        raise ConfigurationError(f"no recurring job named {name!r}")

    async def abeat_status(self) -> BeatStatus:
        """Who leads beat (None: no live leader), since when and by which mechanism, and every
        recurring definition with its next fire."""
        storage = await self._storage()
        leader = await storage.leadership.beat_leader()
        now = self.clock.now()
        recurring = [
            record
            if record.next_fire_at is not None or not record.enabled
            else msgspec.structs.replace(record, next_fire_at=record.schedule().next_fire(now))
            for record in await storage.recurring.list_recurring()
        ]
        return BeatStatus(leader=leader, recurring=recurring)

    beat_status = Blocking(abeat_status)
