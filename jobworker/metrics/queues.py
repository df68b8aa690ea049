"""The queue gauges: per queue, the jobs queued, scheduled for later and running, as one read of
the storage's overview (the counts the dashboard shows, cheap on a big table: a status holding
more than `EXACT_UP_TO` jobs may be the planner's estimate on PostgreSQL).

`scheduled` holds the jobs scheduled for later and the failed ones waiting for their retry: both
run at a time to come. A scheduled job whose time has come stays `scheduled` until a worker
claims it (the database has no status for "due"), so under a backlog of due scheduled jobs the
depth reads low and `scheduled` high.
"""

from __future__ import annotations

import msgspec

from jobworker.models import JobStatus
from jobworker.storage import Storage

__all__ = ["EXACT_UP_TO", "QueueGauges", "read_queue_gauges"]

EXACT_UP_TO = 10_000  # as the dashboard's overview (client.dashboard.DEFAULT_EXACT_UP_TO)


class QueueGauges(msgspec.Struct, frozen=True):
    """Jobs per queue now: `depth` queued (due), `scheduled` for later, `running` (leased)."""

    depth: dict[str, int] = {}
    scheduled: dict[str, int] = {}
    running: dict[str, int] = {}


async def read_queue_gauges(storage: Storage) -> QueueGauges:
    overview = await storage.inspection.overview(EXACT_UP_TO)
    depth, scheduled, running = {}, {}, {}
    for queue in overview.queues:
        counts = queue.counts
        depth[queue.name] = counts.get(JobStatus.QUEUED, 0)
        scheduled[queue.name] = counts.get(JobStatus.SCHEDULED, 0) + counts.get(JobStatus.FAILED, 0)
        running[queue.name] = counts.get(JobStatus.RUNNING, 0)
    return QueueGauges(depth, scheduled, running)
