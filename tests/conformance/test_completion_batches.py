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
