"""The job-type catalogue in the file: a row per job type a worker or beat has declared."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from jobworker.clock import Clock
from jobworker.models import JobType, JobTypeSpec
from jobworker.storage.database_clock import keep_synced
from jobworker.storage.sqlite.connection import Database
from jobworker.storage.sqlite.values import VALUES
from jobworker.storage.type_rows import job_type

__all__ = ["SQLiteCatalogue"]


class SQLiteCatalogue:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def upsert_types(self, specs: Sequence[JobTypeSpec], seen_by: str) -> None:
        if not specs:
            return
        await keep_synced(self._clock)
        rows = [
            [
                spec.name, spec.kind.value, spec.display_name, spec.description, spec.icon,
                spec.queue, spec.priority, spec.max_attempts, spec.cron, spec.timezone,
                int(spec.is_async), spec.args_schema, spec.module,
            ]
            for spec in sorted(specs, key=lambda spec: spec.name)
        ]  # fmt: skip
        params = {
            "types": msgspec.json.encode(rows).decode("utf-8"),
            "seen_by": seen_by,
            "now": self._clock.now().timestamp(),
        }
        await self._db.write(lambda session: session.execute("upsert_job_types", params))

    async def list_types(self) -> list[JobType]:
        rows = await self._db.read(lambda session: session.all("list_job_types"))
        return [job_type(row, VALUES) for row in rows]
