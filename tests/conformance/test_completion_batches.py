"""A batch of completions is applied as each would be alone (SQLite writes a batch in one
statement, with one decision for the jobs whose cancellation was requested and one for the rest)."""

from __future__ import annotations

from datetime import timedelta

from jobworker.clock import FrozenClock
from jobworker.models import AttemptOutcome, Failed, JobStatus, Succeeded
from jobworker.storage import Storage

from .conftest import NewJobFactory
from .test_storage import claim, completion, json


async def test_a_mixed_batch_applies_each_outcome_as_alone(
    storage: Storage, new_job: NewJobFactory, clock: FrozenClock
) -> None:
    jobs = [new_job(), new_job(), new_job(max_attempts=1), new_job(), new_job()]
    await storage.jobs.enqueue_many(jobs)
    claimed = {job.id: job for job in await claim(storage)}
    ok, retried, dead, cancelled, stolen = (claimed[job.id] for job in jobs)
    await storage.control.cancel(cancelled.id, "stop it")  # running: a request
    clock.advance(1)
    retry_at = clock.now() + timedelta(seconds=30)
    batch = [
        completion(ok, Succeeded(result='{"name":"Zoë \\n ✓"}'.encode()), clock, result_ttl=60.0),
        completion(
            retried, Failed(error="ValueError: é", traceback="Tb\n"), clock, retry_at=retry_at
        ),
        completion(dead, Failed(error="RuntimeError: boom", traceback="Traceback"), clock),
        completion(cancelled, Failed(error="E", traceback="T"), clock, retry_at=retry_at),
        completion(stolen, Succeeded(result=b"2"), clock, owner="someone else"),
    ]
    assert (await storage.jobs.complete_many(batch)).applied == 4

    record = await storage.inspection.get(ok.id)
    assert record is not None and record.status is JobStatus.SUCCEEDED
    assert json(record.result) == {"name": "Zoë \n ✓"}
    assert record.expires_at == clock.now() + timedelta(seconds=60)
    record = await storage.inspection.get(retried.id)
    assert record is not None and record.status is JobStatus.FAILED
    assert (record.error, record.traceback, record.run_at) == ("ValueError: é", "Tb\n", retry_at)
    record = await storage.inspection.get(dead.id)
    assert record is not None and record.status is JobStatus.DEAD
    assert record.error == "RuntimeError: boom" and record.completed_at == clock.now()
    record = await storage.inspection.get(cancelled.id)
    assert record is not None and record.status is JobStatus.CANCELLED
    record = await storage.inspection.get(stolen.id)
    assert record is not None and record.status is JobStatus.RUNNING
    assert record.lease_owner == "w1"

    outcomes = {
        job.id: [a.outcome for a in await storage.inspection.attempts(job.id)] for job in jobs
    }
    assert outcomes == {
        ok.id: [AttemptOutcome.SUCCEEDED],
        retried.id: [AttemptOutcome.FAILED],
        dead.id: [AttemptOutcome.DEAD],
        cancelled.id: [AttemptOutcome.FAILED],  # the attempt failed; the job is cancelled
        stolen.id: [],
    }
    [attempt] = await storage.inspection.attempts(retried.id)
    assert attempt.error == "ValueError: é" and attempt.ended_at == clock.now()


async def test_a_batch_ended_among_many_running_jobs_changes_only_its_own(
    storage: Storage, new_job: NewJobFactory, clock: FrozenClock
) -> None:
    jobs = [new_job() for _ in range(150)]
    await storage.jobs.enqueue_many(jobs)
    mine = await claim(storage, "w1", limit=50)
    others = [*await claim(storage, "w2", limit=50), *await claim(storage, "w3", limit=50)]
    asked = mine[1]
    await storage.control.cancel(asked.id, "stop it")  # running: a request
    untouched = [*mine[40:], *others]
    before = {job.id: await storage.inspection.get(job.id) for job in untouched}
    history = {job.id: await storage.events.read_events(job.id, 0, 1000) for job in untouched}
    clock.advance(1)
    retry_at = clock.now() + timedelta(seconds=30)
    batch = [completion(job, Succeeded(result=b"1"), clock) for job in [mine[0], *mine[2:38]]] + [
        completion(asked, Succeeded(result=b"2"), clock),
        completion(mine[38], Failed(error="E", traceback="T"), clock, retry_at=retry_at),
        # Outcomes that no longer hold their leases: another worker's job, a stale attempt.
        completion(others[0], Succeeded(result=b"3"), clock),
        completion(mine[39], Succeeded(result=b"4"), clock, owner="w2"),
    ]
    assert (await storage.jobs.complete_many(batch)).applied == 39

    for job in [mine[0], *mine[2:38]]:
        record = await storage.inspection.get(job.id)
        assert record is not None and record.status is JobStatus.SUCCEEDED
        assert record.lease_owner is None and json(record.result) == 1
        [attempt] = await storage.inspection.attempts(job.id)
        assert attempt.outcome is AttemptOutcome.SUCCEEDED and attempt.worker == "w1"
    record = await storage.inspection.get(asked.id)
    assert record is not None and record.status is JobStatus.SUCCEEDED  # it finished first
    record = await storage.inspection.get(mine[38].id)
    assert record is not None and record.status is JobStatus.FAILED and record.run_at == retry_at
    record = await storage.inspection.get(mine[39].id)
    assert record is not None and record.status is JobStatus.RUNNING
    assert record.lease_owner == "w1" and not await storage.inspection.attempts(mine[39].id)
    for job in untouched:
        assert await storage.inspection.get(job.id) == before[job.id]
        assert not await storage.inspection.attempts(job.id)
        assert await storage.events.read_events(job.id, 0, 1000) == history[job.id]
