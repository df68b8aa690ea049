"""The overview's counts on PostgreSQL: exact where a status has few jobs, the planner's estimate
where it has many, so that reading them costs about the same at a thousand jobs or ten million.

Counting a status means visiting each of its rows, so a status of a million jobs costs a hundred
milliseconds and more; the planner's estimate comes from the table's statistics (autovacuum
analyses jobs after 2 % of it changed: version 10), scaled to its current size, at no cost.

- A status with a partial index of its own (failed, dead, cancelled and awaiting in
  jobs_attention, running in jobs_leases) is counted through it, up to the cap: an index-only
  scan, which reads the table only for rows changed since the last vacuum.
- The others (queued and scheduled share jobs_claimable with failed; succeeded has no index) are
  counted only when the estimate says they hold at most the cap.
- A status of more jobs than the cap is given as its estimate, named in `estimated`.

By queue: a status of at most `QUEUE_ROWS` jobs is counted by queue from its rows; a bigger one
is split among the queues as the planner estimates each queue's share (scaled to the status's
count), and those queues are marked `estimated`. The queues listed are those with counted rows,
those with a pause state and, when a split was estimated, those the statistics name among the
most common values of jobs.queue (a queue too rare to be named there shows only its exact
counts).

The statements run in one snapshot with plan_cache_mode = force_custom_plan: a plan made for any
status (a prepared statement's generic plan) could not use a partial index.
"""

from __future__ import annotations

import json
from typing import Any

from jobworker.models import JobCounts, JobStatus, QueueInfo
from jobworker.storage.postgres.connection import Database

__all__ = ["INDEXED_STATUSES", "QUEUE_ROWS", "overview_counts", "planner_rows"]

INDEXED_STATUSES = frozenset(
    {
        JobStatus.FAILED,
        JobStatus.DEAD,
        JobStatus.CANCELLED,
        JobStatus.AWAITING,
        JobStatus.RUNNING,
    }
)
# A status of at most this many jobs is counted by queue from its rows.
QUEUE_ROWS = 1_000


async def overview_counts(db: Database, schema: str, cap: int) -> JobCounts:
    async with db.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        counts: dict[JobStatus, int] = {}
        estimated: set[JobStatus] = set()
        split: set[JobStatus] = set()  # statuses whose counts by queue are estimated
        by_queue: dict[str, dict[str, int]] = {}
        for status in JobStatus:
            counts[status], exact = await _count(db, conn, status, cap)
            if not exact:
                estimated.add(status)
            if counts[status] > min(cap, QUEUE_ROWS):
                split.add(status)
            elif counts[status]:
                for queue, n in await db.fetch("status_queues", status.value, conn=conn):
                    by_queue.setdefault(queue, {})[status.value] = n
        states = {q: bool(paused) for q, paused in await db.fetch("queue_states", conn=conn)}
        queues = sorted(set(by_queue) | set(states) | await _common_queues(db, conn, schema, split))
        for status in sorted(split):
            shares = [await planner_rows(db, conn, status, queue) for queue in queues]
            for queue, n in zip(queues, _scaled(shares, counts[status]), strict=True):
                if n:
                    by_queue.setdefault(queue, {})[status.value] = n
    infos = [
        QueueInfo(
            name=queue,
            paused=states.get(queue, False),
            counts=by_queue.get(queue, {}),
            estimated=any(status.value in by_queue.get(queue, {}) for status in split),
        )
        for queue in queues
    ]
    return JobCounts(counts=counts, estimated=frozenset(estimated), queues=infos)


async def _count(db: Database, conn: Any, status: JobStatus, cap: int) -> tuple[int, bool]:
    """The status's count, and whether it is exact (see the module docstring)."""
    guess = None
    if status not in INDEXED_STATUSES:
        guess = await planner_rows(db, conn, status)
        if guess > cap:
            return guess, False
    total = int(await db.fetchval("count_capped", status.value, cap + 1, conn=conn))
    if total <= cap:
        return total, True
    # More than the cap after all: its estimate, and at least what was read.
    if guess is None:
        guess = await planner_rows(db, conn, status)
    return max(guess, total), False


async def _common_queues(db: Database, conn: Any, schema: str, split: set[JobStatus]) -> set[str]:
    """The queues the statistics name (when some status is split among queues by estimate)."""
    if not split:
        return set()
    common = await db.fetchval("common_queues", schema, conn=conn)
    if common is None:  # no statistics yet: a table autovacuum has not analysed
        common = [row[0] for row in await db.fetch("distinct_queues", conn=conn)]
    return set(common)


def _scaled(shares: list[int], total: int) -> list[int]:
    """`shares` scaled to add up to about `total` (the status's count, when the planner's
    estimates by queue add up to something else)."""
    whole = sum(shares)
    if not whole:
        return [0] * len(shares)
    return [round(share * total / whole) for share in shares]


async def planner_rows(db: Database, conn: Any, status: JobStatus, queue: str | None = None) -> int:
    """The planner's estimate of the jobs in `status` (and `queue`). It never says 0 (a plan
    has at least a row): an estimate of 1 is read as none."""
    plan = json.loads(await db.fetchval("estimate_rows", status.value, queue, conn=conn))
    rows = int(plan[0]["Plan"]["Plan Rows"])
    return 0 if rows <= 1 else rows
