"""The admin API's overview (`GET /api/stats`, and its live stream): `StatsReader` reads it, one
per client, shared by the route and the stream's poller so that both use one throughput cache.

Throughput is the last hour of attempt ends per minute. A minute that ended more than `settle`
seconds ago no longer changes (attempt rows are inserted as attempts end), so the reader keeps
it and reads from the database only the minutes after the last one it keeps: the first overview
of a process reads the hour, the next ones a few minutes. A minute is kept as it was read: rows
deleted afterwards (a job's result TTL, a job deleted by hand) still count in it until it leaves
the hour.
"""

from __future__ import annotations

import asyncio
import os
import socket
from datetime import datetime, timedelta

from jobworker._version import __version__
from jobworker.client import Client
from jobworker.client.dashboard import DEFAULT_EXACT_UP_TO, window_start
from jobworker.models import (
    THROUGHPUT_OUTCOMES,
    JobStatus,
    QueueInfo,
    ThroughputBucket,
    WorkerInfo,
)
from jobworker.storage import dialect_of
from jobworker.web.admin.schemas import (
    BeatJson,
    InstanceJson,
    QueueJson,
    StatsJson,
    ThroughputBucketJson,
    ThroughputJson,
    WorkerJson,
)
from jobworker.web.per_client import one_per_client

__all__ = ["StatsReader", "ThroughputCache", "queue_json", "worker_json"]

BUCKETS = 60
BUCKET_SECONDS = 60
SETTLE = 60.0  # seconds after its end from which a minute's count is kept


class ThroughputCache:
    """The last `buckets` buckets of attempt ends, the settled ones read once."""

    def __init__(
        self,
        client: Client,
        buckets: int = BUCKETS,
        bucket_seconds: int = BUCKET_SECONDS,
        settle: float = SETTLE,
    ) -> None:
        self.client = client
        self.buckets = buckets
        self.bucket_seconds = bucket_seconds
        self.settle = settle
        self.buckets_read = 0  # buckets read from the database so far
        self._settled: dict[datetime, dict[str, int]] = {}
        self._lock = asyncio.Lock()

    async def read(self) -> ThroughputJson:
        async with self._lock:
            now = await self.client.anow()
            since = window_start(now, self.buckets, self.bucket_seconds)
            step = timedelta(seconds=self.bucket_seconds)
            starts = [since + i * step for i in range(self.buckets)]
            self._settled = {at: c for at, c in self._settled.items() if at >= since}
            first = next(i for i, at in enumerate(starts) if at not in self._settled)
            fresh = await self.client.athroughput(
                buckets=self.buckets - first,
                bucket_seconds=self.bucket_seconds,
                since=starts[first],
            )
            self.buckets_read += len(fresh.buckets)
            settled_until = now - timedelta(seconds=self.settle)
            for bucket in fresh.buckets:
                if bucket.at + step <= settled_until:
                    self._settled[bucket.at] = bucket.counts
            kept = [ThroughputBucket(at=at, counts=self._settled[at]) for at in starts[:first]]
        return ThroughputJson(
            bucket_seconds=self.bucket_seconds,
            since=since,
            outcomes=list(THROUGHPUT_OUTCOMES),
            buckets=[
                ThroughputBucketJson(at=bucket.at, counts=dict(bucket.counts))
                for bucket in [*kept, *fresh.buckets]
            ],
        )


class StatsReader:
    """What `GET /api/stats` answers, read for one client. `exact_up_to`: a status with more
    jobs may be counted by an estimate (see `Client.aoverview`)."""

    def __init__(
        self,
        client: Client,
        *,
        exact_up_to: int = DEFAULT_EXACT_UP_TO,
        throughput: ThroughputCache | None = None,
    ) -> None:
        self.client = client
        self.exact_up_to = exact_up_to
        self.throughput = throughput or ThroughputCache(client)

    @classmethod
    def for_client(cls, client: Client) -> StatsReader:
        """The reader of this client that the route and the stream share (kept on the client,
        as `StreamHub.for_client`)."""
        return one_per_client(client, StatsReader, lambda: cls(client))

    async def read(self) -> StatsJson:
        client = self.client
        overview = await client.aoverview(exact_up_to=self.exact_up_to)
        by_status = {status.value: overview.counts.get(status, 0) for status in JobStatus}
        leader = (await client.abeat_status()).leader
        settings = client.settings
        return StatsJson(
            counts=by_status,
            estimated=[status.value for status in JobStatus if status in overview.estimated],
            queue_depth=by_status[JobStatus.QUEUED.value],
            scheduled_pending=by_status[JobStatus.SCHEDULED.value],
            running_now=by_status[JobStatus.RUNNING.value],
            queues=[queue_json(info) for info in overview.queues],
            workers=[worker_json(info) for info in await client.aworkers()],
            beat=None
            if leader is None
            else BeatJson(
                leader=leader.holder,
                mechanism=leader.mechanism,
                since=leader.since,
                renewed_at=leader.renewed_at,
                expires_at=leader.expires_at,
            ),
            instance=InstanceJson(
                host=socket.gethostname(),
                pid=os.getpid(),
                version=__version__,
                storage=dialect_of(settings.database_url),
                bus="redis" if settings.redis_url else "database",
            ),
            throughput=await self.throughput.read(),
        )


def worker_json(info: WorkerInfo) -> WorkerJson:
    return WorkerJson(
        id=info.id,
        host=info.host,
        pid=info.pid,
        role=info.role,
        module=info.module,
        queues=list(info.queues),
        slots=info.slots,
        running=info.running,
        started_at=info.started_at,
        last_heartbeat=info.last_heartbeat,
        gone=info.gone,
        parent=info.parent,
    )


def queue_json(info: QueueInfo) -> QueueJson:
    return QueueJson(
        name=info.name, paused=info.paused, counts=dict(info.counts), estimated=info.estimated
    )
