"""A paused queue gives nothing to a claim: the claim statement itself reads the pause, so a job
enqueued after a pause is never claimed, whatever a worker last read of the paused queues."""

from __future__ import annotations

from jobworker.storage import Storage

from .conftest import NewJobFactory
from .test_storage import claim


async def test_a_claim_takes_nothing_from_a_paused_queue(
    storage: Storage, new_job: NewJobFactory
) -> None:
    await storage.control.set_queue_paused("default", True)
    paused = new_job()
    other = new_job(queue="other")
    await storage.jobs.enqueue_many([paused, other])
    taken = await claim(storage, queues=["default", "other"])
    assert [job.id for job in taken] == [other.id]
    await storage.control.set_queue_paused("default", False)
    assert [job.id for job in await claim(storage)] == [paused.id]


async def test_a_capped_claim_takes_nothing_from_a_paused_queue(
    storage: Storage, new_job: NewJobFactory
) -> None:
    await storage.control.set_queue_paused("default", True)
    job = new_job()
    await storage.jobs.enqueue_many([job])
    taken = await storage.jobs.claim("w1", ["t.noop"], ["default"], 10, 30.0, {"t.noop": 5})
    assert taken == []
    await storage.control.set_queue_paused("default", False)
    taken = await storage.jobs.claim("w1", ["t.noop"], ["default"], 10, 30.0, {"t.noop": 5})
    assert [claimed.id for claimed in taken] == [job.id]
