from __future__ import annotations

import uuid

from jobworker import JobContext, job


@job(name="cli.export")
def export(ctx: JobContext, tenant_id: uuid.UUID, limit: int = 10) -> str:
    return f"{tenant_id}:{limit}"


@job(name="cli.cleanup", kind="system")
def cleanup(ctx: JobContext) -> None:
    return None
