"""The job-type catalogue from the code's side: the rows a process's registry declares, and the
one write every worker process and beat makes when it starts.

The write is best effort: a process whose write fails (the table is locked, the database went
away between opening and now) logs a warning and goes on serving jobs; its next start writes
again. It is bounded in time, so a slow database delays a start by at most `_WRITE_TIMEOUT`.
"""

from __future__ import annotations

import asyncio
import logging

import msgspec

from jobworker.config import Settings
from jobworker.definitions import JobDefinition, Registry
from jobworker.enqueueing import resolve
from jobworker.models import JobTypeSpec, ScheduleOptions
from jobworker.storage import Storage

__all__ = ["job_type_specs", "record_job_types"]

logger = logging.getLogger("jobworker.catalogue")

_WRITE_TIMEOUT = 10.0


def job_type_specs(registry: Registry, settings: Settings) -> list[JobTypeSpec]:
    """Every job the registry defines, as its catalogue row says it, by name."""
    return [_spec(definition, settings) for definition in sorted(registry, key=_name)]


async def record_job_types(
    storage: Storage, registry: Registry, settings: Settings, seen_by: str
) -> bool:
    """Write the registry's job types to the catalogue; False (and a warning) if that failed."""
    specs = job_type_specs(registry, settings)
    if not specs:
        return True
    try:
        await asyncio.wait_for(storage.catalogue.upsert_types(specs, seen_by), _WRITE_TIMEOUT)
    except Exception as exc:  # never a reason not to serve jobs
        logger.warning(
            "could not record %d job type(s) in the job-type catalogue (%s); "
            "the next start tries again",
            len(specs),
            exc or type(exc).__name__,
        )
        return False
    return True


def _name(definition: JobDefinition) -> str:
    return definition.name


def _spec(definition: JobDefinition, settings: Settings) -> JobTypeSpec:
    placement = resolve(ScheduleOptions(), definition, settings)
    return JobTypeSpec(
        name=definition.name,
        kind=definition.kind,
        display_name=definition.display_name,
        description=definition.description,
        icon=definition.icon,
        queue=placement.queue,
        priority=placement.priority,
        max_attempts=placement.max_attempts,
        cron=definition.cron,
        timezone=definition.timezone or ("UTC" if definition.cron else None),
        is_async=definition.is_async,
        args_schema=_args_schema(definition),
        module=definition.module,
    )


def _args_schema(definition: JobDefinition) -> str | None:
    """The JSON Schema of the job's arguments, as JSON text; None if msgspec cannot state it."""
    try:
        schema = msgspec.json.schema(definition.args_type)
    except (TypeError, ValueError):
        return None
    return msgspec.json.encode(schema).decode("utf-8")
