"""The overview's counts on PostgreSQL: exact where a status has few jobs, the planner's estimate
where it has many, so that reading them costs about the same at a thousand jobs or ten million.

Counting a status means reading each of its rows (there is no count in an index), so a status of
a million jobs costs a hundred milliseconds and more. The planner's estimate comes from the
table's statistics (autovacuum analyses jobs after 2 % of it changed: version 10) scaled to its
current size, at no cost.

A status with a partial index of its own (failed, dead, cancelled and awaiting in jobs_attention,
running in jobs_leases) is counted through it up to the cap, always. The others (queued and
scheduled share jobs_claimable with failed; succeeded has no index) are counted only when the
estimate says they hold at most the cap: a status the estimate says is bigger is given as the
estimate, and so are its counts by queue, for the queues the statistics name among the most
common values of jobs.queue (a queue too rare to be named there shows the exact counts only).
The statements run with plan_cache_mode = force_custom_plan: a plan made for any status (a
prepared statement's generic plan) could not use a partial index.
"""

from __future__ import annotations

import json
from typing import Any

from jobworker.models import JobCounts, JobStatus, QueueInfo
from jobworker.storage.postgres.connection import Database

__all__ = ["INDEXED_STATUSES", "overview_counts", "planner_rows"]

INDEXED_STATUSES = frozenset(
    {
        JobStatus.FAILED,
        JobStatus.DEAD,
        JobStatus.CANCELLED,
        JobStatus.AWAITING,
        JobStatus.RUNNING,
    }
)


async def overview_counts(db: Database, schema: str, cap: int) -> JobCounts:
    async with db.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        counts: dict[JobStatus, int] = {}
        estimated: set[JobStatus] = set()
        by_queue: dict[str, dict[str, int]] = {}
        for status in JobStatus:
            guess = None
            if status not in INDEXED_STATUSES:
                guess = await planner_rows(db, conn, status, None)
                if guess > cap:
                    counts[status] = guess
                    estimated.add(status)
                    continue
            rows = await db.fetch("status_queues_capped", status.value, cap + 1, conn=conn)
            total = sum(n for _queue, n in rows)
            if total > cap:  # more than the cap after all: its estimate, at least what was read
                if guess is None:
                    guess = await planner_rows(db, conn, status, None)
                counts[status] = max(guess, total)
                estimated.add(status)
                continue
            counts[status] = total
            for queue, n in rows:
                by_queue.setdefault(queue, {})[status.value] = n
        states = {
            queue: bool(paused) for queue, paused in await db.fetch("queue_states", conn=conn)
        }
        queues = set(by_queue) | set(states)
        if estimated:
            common = await db.fetchval("common_queues", schema, conn=conn)
            if common is None:  # no statistics yet: a table autovacuum has not analysed
                common = [row[0] for row in await db.fetch("distinct_queues", conn=conn)]
            queues |= set(common)
        infos = []
        for queue in sorted(queues):
            queue_counts = by_queue.get(queue, {})
            for status in sorted(estimated):
                share = await planner_rows(db, conn, status, queue)
                if share:
                    queue_counts[status.value] = share
            infos.append(
                QueueInfo(
                    name=queue,
                    paused=states.get(queue, False),
                    counts=queue_counts,
                    estimated=any(status.value in queue_counts for status in estimated),
                )
            )
    return JobCounts(counts=counts, estimated=frozenset(estimated), queues=infos)


async def planner_rows(db: Database, conn: Any, status: JobStatus, queue: str | None) -> int:
    """The planner's estimate of the jobs in `status` (and `queue`). It never says 0 (a plan
    has at least a row): an estimate of 1 is read as none."""
    plan = json.loads(await db.fetchval("estimate_rows", status.value, queue, conn=conn))
    rows = int(plan[0]["Plan"]["Plan Rows"])
    return 0 if rows <= 1 else rows
