"""What the metrics read and count on every backend: the queue gauges from the storage's
overview, and the lost attempts a lease rescue counts in the rescuing process's figures."""

from __future__ import annotations

from jobworker import Settings
from jobworker.clock import FrozenClock
from jobworker.maintenance import rescue_expired_leases
from jobworker.metrics.figures import Figures
from jobworker.metrics.queues import QueueGauges, read_queue_gauges
from jobworker.storage import Storage

from .conftest import NewJobFactory


async def test_queue_gauges_count_queued_scheduled_and_running_jobs_by_queue(
    storage: Storage, new_job: NewJobFactory, clock: FrozenClock
) -> None:
    assert await read_queue_gauges(storage) == QueueGauges()
    await storage.jobs.enqueue_many(
        [
            new_job(),
            new_job(),
            new_job(queue="mail"),
            new_job(delay=3600),
            new_job(queue="mail", delay=60),
        ]
    )
    [running] = await storage.jobs.claim("w1", ["t.noop"], ["mail"], 1, 30.0, {})
    assert running.queue == "mail"
    gauges = await read_queue_gauges(storage)
    assert gauges == QueueGauges(
        depth={"default": 2, "mail": 0},
        scheduled={"default": 1, "mail": 1},
        running={"default": 0, "mail": 1},
    )


async def test_a_lease_rescue_counts_each_lost_attempt_by_job_type_and_queue(
    storage: Storage, new_job: NewJobFactory, clock: FrozenClock
) -> None:
    await storage.jobs.enqueue_many(
        [new_job(), new_job(job_type="t.other", queue="mail"), new_job(job_type="t.other")]
    )
    claimed = await storage.jobs.claim(
        "w1", ["t.noop", "t.other"], ["default", "mail"], 10, 5.0, {}
    )
    assert len(claimed) == 3
    figures = Figures()
    clock.advance(4)
    assert await rescue_expired_leases(storage, Settings(), lost=figures.attempt_lost) == 0
    assert not figures.recorded
    clock.advance(2)
    assert await rescue_expired_leases(storage, Settings(), lost=figures.attempt_lost) == 3
    lost = {
        (series.job_type, series.queue): series.outcomes for series in figures.snapshot().attempts
    }
    assert lost == {
        ("t.noop", "default"): {"lost": 1},
        ("t.other", "mail"): {"lost": 1},
        ("t.other", "default"): {"lost": 1},
    }
    assert all(s.duration.count == 0 for s in figures.snapshot().attempts), "lost: not timed"
