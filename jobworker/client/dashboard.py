"""The client's reads for an overview: counts that stay cheap on a big table, and throughput
(attempts ended per bucket by outcome)."""

from __future__ import annotations

from datetime import datetime, timedelta

from jobworker.client.catalogue import JobTypes
from jobworker.errors import ConfigurationError
from jobworker.models import (
    THROUGHPUT_OUTCOMES,
    JobCounts,
    Throughput,
    ThroughputBucket,
)
from jobworker.portal import Blocking

__all__ = ["DEFAULT_EXACT_UP_TO", "Dashboard", "window_start"]

# A status of at most this many jobs is counted exactly by `aoverview`.
DEFAULT_EXACT_UP_TO = 10_000


class Dashboard(JobTypes):
    async def aoverview(self, *, exact_up_to: int = DEFAULT_EXACT_UP_TO) -> JobCounts:
        """Jobs by status and by queue, read so that it stays fast on a big table: a status of
        at most `exact_up_to` jobs is counted exactly; on PostgreSQL a bigger one may be the
        planner's estimate, named in `estimated` (`acounts()` counts every row exactly)."""
        if exact_up_to < 1:
            raise ConfigurationError("exact_up_to must be at least 1")
        storage = await self._storage()
        return await storage.inspection.overview(exact_up_to)

    overview = Blocking(aoverview)

    async def athroughput(
        self, *, buckets: int = 60, bucket_seconds: int = 60, since: datetime | None = None
    ) -> Throughput:
        """Attempts that ended in each of `buckets` buckets of `bucket_seconds`, by outcome
        (`THROUGHPUT_OUTCOMES`), oldest first, zero-filled. The buckets start at `since`, by
        default those ending with the current one (on the database's clock, aligned to whole
        buckets). Attempts deleted with their job (its result TTL) are not counted."""
        if buckets < 1 or bucket_seconds < 1:
            raise ConfigurationError("buckets and bucket_seconds must be at least 1")
        storage = await self._storage()
        if since is None:
            since = window_start(storage.clock.now(), buckets, bucket_seconds)
        step = timedelta(seconds=bucket_seconds)
        until = since + buckets * step
        counts = [dict.fromkeys(THROUGHPUT_OUTCOMES, 0) for _ in range(buckets)]
        for bucket, outcome, n in await storage.inspection.throughput(since, until, bucket_seconds):
            if 0 <= bucket < buckets and outcome in counts[bucket]:
                counts[bucket][outcome] += n
        return Throughput(
            bucket_seconds=bucket_seconds,
            since=since,
            buckets=[
                ThroughputBucket(at=since + i * step, counts=counted)
                for i, counted in enumerate(counts)
            ],
        )

    throughput = Blocking(athroughput)

    async def anow(self) -> datetime:
        """The database's time, as the storage reads it (see `storage.database_clock`)."""
        storage = await self._storage()
        return storage.clock.now()

    now = Blocking(anow)


def window_start(now: datetime, buckets: int, bucket_seconds: int) -> datetime:
    """The start of the first of `buckets` buckets whose last holds `now`, buckets aligned to
    whole multiples of `bucket_seconds` since the epoch."""
    epoch = now.timestamp()
    current = epoch - epoch % bucket_seconds
    return datetime.fromtimestamp(current - (buckets - 1) * bucket_seconds, now.tzinfo)
