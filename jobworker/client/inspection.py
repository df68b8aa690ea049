"""The client's reading and control of jobs and queues: get, list, wait for a result, cancel,
retry, delete, pause and resume queues, counts."""

from __future__ import annotations

import asyncio
import builtins
import uuid
from collections.abc import Iterable
from typing import Any

import msgspec

from jobworker import codec
from jobworker.client.base import ClientBase, as_job_id, describe
from jobworker.definitions import NAME_PATTERN
from jobworker.errors import (
    ConfigurationError,
    JobCancelledError,
    JobFailedError,
    JobNotFoundError,
    ResultTimeoutError,
)
from jobworker.models import (
    AttemptRecord,
    CancelResult,
    JobDescriptor,
    JobFilter,
    JobKind,
    JobRecord,
    JobStatus,
    QueueInfo,
)
from jobworker.portal import Blocking
from jobworker.storage.rows import JobRecords


class JobList(builtins.list[JobDescriptor]):
    """A page of jobs, and a line for each row of it that could not be read (`unreadable`).

    `next_before`: when the page is full (more may follow), the id of its last row, which
    `alist(before=...)` takes for the next page; None when the page is the last. When a listing
    with a `scan_limit` stopped before it filled the page, `scan_limited` is true and
    `next_before` is the id of the last row it read: older matches may follow."""

    def __init__(
        self,
        unreadable: Iterable[str] = (),
        next_before: uuid.UUID | None = None,
        scan_limited: bool = False,
    ) -> None:
        super().__init__()
        self.unreadable = builtins.list(unreadable)
        self.next_before = next_before
        self.scan_limited = scan_limited


class Inspection(ClientBase):
    async def aget(self, job_id: uuid.UUID | str) -> JobDescriptor | None:
        """The job as a descriptor, or None if no job has this id."""
        storage = await self._storage()
        record = await storage.inspection.get(as_job_id(job_id))
        return None if record is None else describe(record)

    get = Blocking(aget)

    async def alist(
        self,
        *,
        status: JobStatus | str | None = None,
        kind: JobKind | str | None = None,
        job_type: str | None = None,
        queue: str | None = None,
        idempotency_key: str | None = None,
        search: str | None = None,
        before: uuid.UUID | str | None = None,
        limit: int = 50,
        offset: int = 0,
        scan_limit: int | None = None,
    ) -> JobList:
        """Jobs matching every given filter, newest first (by id), `limit` at a time.

        `search` keeps the jobs whose type holds it, ignoring case, or whose id's text does.
        Pages: `before=page.next_before` gives the page after `page` (keyset paging: a row is
        never skipped or repeated, whatever is enqueued or deleted meanwhile); `offset` skips
        rows instead. The rows of the page that could not be read are left out and named in
        `unreadable`.

        `scan_limit` bounds the rows a filter no index serves may read (the text search, a job
        type, a queue...): the page may then hold fewer than `limit` jobs with
        `scan_limited` set, and `next_before` goes on below the last row read. It is at least
        `limit + offset`: a listing of every row always fills its page."""
        if not 1 <= limit <= 10_000 or offset < 0:
            raise ConfigurationError("limit must be 1-10000 and offset must not be negative")
        if scan_limit is not None:
            if scan_limit < 1:
                raise ConfigurationError("scan_limit must be at least 1")
            scan_limit = max(scan_limit, limit + offset)  # a page of every row is never cut
        filter_ = JobFilter(
            status=_status(status),
            kind=_kind(kind),
            job_type=job_type,
            queue=queue,
            idempotency_key=idempotency_key,
            search=search or None,
            before=None if before is None else as_job_id(before),
        )
        storage = await self._storage()
        records = await storage.inspection.list_jobs(
            filter_, limit=limit, offset=offset, scan_limit=scan_limit
        )
        edge = records.scan_edge
        listed = JobList(
            (f"id {row.raw_id!r}: {row.reason}" for row in records.unreadable),
            edge if edge is not None else _next_before(records, limit),
            scan_limited=edge is not None,
        )
        for record in records:
            try:
                listed.append(describe(record))
            except msgspec.DecodeError as exc:
                listed.unreadable.append(f"id {str(record.id)!r}: {exc}")
        return listed

    list = Blocking(alist)

    async def afind_by_idempotency_key(self, key: str) -> JobDescriptor | None:
        """The job holding an idempotency key, if one does."""
        found = await self.alist(idempotency_key=key, limit=1)
        return found[0] if found else None

    find_by_idempotency_key = Blocking(afind_by_idempotency_key)

    async def aresult(self, job_id: uuid.UUID | str, timeout: float | None = None) -> Any:
        """Wait for a job to finish; its result, decoded to its job's return type when the job
        is registered here. See `JobHandle.result` for the errors."""
        job_id = as_job_id(job_id)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        storage = await self._storage()
        pause = 0.01
        while True:
            record = await storage.inspection.get(job_id)
            if record is None:
                raise JobNotFoundError(job_id)
            if record.status in _ENDED:
                return self._outcome(record)
            if deadline is not None and loop.time() >= deadline:
                raise ResultTimeoutError(
                    f"job {job_id} did not finish within {timeout}s (it is {record.status})"
                )
            wait = pause if deadline is None else min(pause, deadline - loop.time())
            await asyncio.sleep(max(wait, 0))
            pause = min(pause * 1.5, 0.5)

    result = Blocking(aresult)

    def _outcome(self, record: JobRecord) -> Any:
        """The result of a job that has ended, or the error that says why there is none."""
        if record.status is JobStatus.DEAD:
            raise JobFailedError(record.id, record.error, record.traceback)
        if record.status is JobStatus.CANCELLED:
            raise JobCancelledError(f"job {record.id} was cancelled: {record.error or ''}")
        if record.result is None:
            return None
        if record.job_type in self.registry:
            return self.registry.get(record.job_type).decode_result(record.result)
        return codec.decode(record.result)

    async def aattempts(self, job_id: uuid.UUID | str) -> builtins.list[AttemptRecord]:
        """Every finished attempt of a job, oldest first."""
        storage = await self._storage()
        return await storage.inspection.attempts(as_job_id(job_id))

    attempts = Blocking(aattempts)

    async def acounts(self) -> dict[JobStatus, int]:
        """How many jobs are in each status."""
        storage = await self._storage()
        return await storage.inspection.count_by_status()

    counts = Blocking(acounts)

    async def aqueues(self) -> builtins.list[QueueInfo]:
        """Every queue: its job counts by status and whether it is paused."""
        storage = await self._storage()
        return await storage.inspection.queues()

    queues = Blocking(aqueues)

    # Control -------------------------------------------------------------------------------

    async def acancel(self, job_id: uuid.UUID | str, reason: str = "cancelled") -> CancelResult:
        """Cancel a job. Waiting jobs (queued, scheduled, awaiting, failed) are cancelled at once,
        with the continuations waiting on them; a running job's worker is asked to stop it; a
        finished job is left as it is (`CancelResult.FINISHED`). Cancelled jobs never retry."""
        storage = await self._storage()
        return await storage.control.cancel(as_job_id(job_id), reason)

    cancel = Blocking(acancel)

    async def aretry(self, job_id: uuid.UUID | str) -> None:
        """Queue a dead job again; it gets one more attempt if it had used them all."""
        storage = await self._storage()
        await storage.control.retry_job(as_job_id(job_id))

    retry = Blocking(aretry)

    async def adelete(self, job_id: uuid.UUID | str) -> None:
        """Delete a job that is not running, with its attempts and events."""
        storage = await self._storage()
        await storage.control.delete_job(as_job_id(job_id))

    delete = Blocking(adelete)

    async def apause_queue(self, queue: str) -> None:
        """Workers everywhere stop claiming from `queue` within a poll interval; running jobs
        carry on."""
        await self._set_paused(queue, True)

    pause_queue = Blocking(apause_queue)

    async def aresume_queue(self, queue: str) -> None:
        """Workers claim from `queue` again."""
        await self._set_paused(queue, False)

    resume_queue = Blocking(aresume_queue)

    async def _set_paused(self, queue: str, paused: bool) -> None:
        if not NAME_PATTERN.match(queue):
            raise ConfigurationError(f"invalid queue name {queue!r}")
        storage = await self._storage()
        await storage.control.set_queue_paused(queue, paused)


_ENDED = frozenset({JobStatus.SUCCEEDED, JobStatus.DEAD, JobStatus.CANCELLED})


def _next_before(records: JobRecords, limit: int) -> uuid.UUID | None:
    """The id of a full page's last row (the lowest: the page is newest first by id)."""
    if len(records) + len(records.unreadable) < limit:
        return None
    ids = [record.id for record in records]
    ids += [row.job_id for row in records.unreadable if row.job_id is not None]
    return min(ids, default=None)


def _kind(kind: JobKind | str | None) -> JobKind | None:
    try:
        return JobKind(kind) if kind is not None else None
    except ValueError:
        known = ", ".join(k.value for k in JobKind)
        raise ConfigurationError(f"unknown kind {kind!r} (known: {known})") from None


def _status(status: JobStatus | str | None) -> JobStatus | None:
    try:
        return JobStatus(status) if status is not None else None
    except ValueError:
        known = ", ".join(s.value for s in JobStatus)
        raise ConfigurationError(f"unknown status {status!r} (known: {known})") from None
