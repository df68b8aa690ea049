"""What the browser tests of the jobs list and the job page share: waiting for a job to reach a
status through the client, enqueueing, and reading the page's rows."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from jobworker import JobDescriptor, JobStatus

from .dashboard_support import Site


async def enqueue(site: Site, job_type: str, **args: Any) -> uuid.UUID:
    """Enqueue a job of the site's (its registry is not bound: the worker's App runs it)."""
    return (await site.app.client.aenqueue(job_type, args)).job_id


async def until_status(
    site: Site, job_id: Any, *statuses: JobStatus, timeout: float = 20.0
) -> JobDescriptor:
    """The job once its status is one of `statuses` (polling the store)."""
    deadline = time.monotonic() + timeout
    while True:
        job = await site.app.client.aget(job_id)
        if job is not None and job.status in statuses:
            return job
        if time.monotonic() > deadline:
            found = None if job is None else job.status
            raise AssertionError(f"job {job_id} is {found}, not one of {statuses}")
        await asyncio.sleep(0.05)


async def rows(page: Any) -> list[dict[str, str]]:
    """The job rows the list shows: id, status, type and kind of each, in order."""
    found: list[dict[str, str]] = await page.locator("table.jobs tbody tr").evaluate_all(
        """rows => rows.map(row => ({
            id: row.dataset.jobId, status: row.dataset.status,
            type: row.dataset.type, kind: row.dataset.kind}))"""
    )
    return found
