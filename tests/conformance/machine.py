"""The state machine Hypothesis drives: each rule does one thing to a backend and to the pure
model of `model.py`, and checks what the backend answered; after each step every job's status,
attempt, error, traceback, attempt rows and lifecycle events are compared with the model's.

Hypothesis runs it on a thread of its own; the storage runs on the test's event loop. Each
machine takes a queue and workers of its own, so machines sharing a database do not see each
other's jobs.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Coroutine
from datetime import datetime, timedelta
from typing import Any, TypeVar

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from jobworker import transitions as t
from jobworker.clock import FrozenClock
from jobworker.errors import InvalidJobStateError, JobNotFoundError
from jobworker.ids import uuid7
from jobworker.models import (
    Cancelled,
    ClaimedJob,
    Completion,
    EventKind,
    Failed,
    JobStatus,
    NewJob,
    Outcome,
    Released,
    Succeeded,
)
from jobworker.payloads import Lifecycle
from jobworker.retry import RetryPolicy
from jobworker.storage import Storage

from .model import Model, ModelJob

T = TypeVar("T")

JOB_TYPE = "t.model"
LEASE = 30.0
POLICY = RetryPolicy(base_delay=5.0, max_delay=20.0)
MAX_JOBS = 8
FINISHES = ["succeed", "fail", "fail permanently", "release", "cancelled"]
pick = st.integers(min_value=0, max_value=1_000)
delays = st.sampled_from([0, 0, 10])
priorities = st.integers(0, 2)
max_attempts = st.integers(1, 3)


class StorageMachine(RuleBasedStateMachine):
    def __init__(self, storage: Storage, clock: FrozenClock, loop: asyncio.AbstractEventLoop):
        super().__init__()
        self.storage, self.clock, self.loop = storage, clock, loop
        tag = uuid.uuid4().hex[:10]
        self.queue = f"q{tag}"
        self.owners = [f"w{n}-{tag}" for n in (1, 2)]
        self.model = Model()
        # Attempts that are over, with their worker: a late outcome of theirs must be refused.
        self.stale: list[tuple[ClaimedJob, str]] = []
        self.rng = random.Random(0)
        self.said = 0

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout=60)

    def teardown(self) -> None:
        for owner in self.owners:  # leave no lease to expire under a later example
            self.run(self.storage.jobs.release_owner(owner, lost=False, reason="teardown"))

    def _reason(self, what: str) -> str:
        self.said += 1
        return f"{what} {self.said}"

    # Enqueue -----------------------------------------------------------------------------------

    def _new_job(
        self, delay: int, priority: int, max_attempts: int, parent: uuid.UUID | None
    ) -> tuple[NewJob, ModelJob]:
        now = self.clock.now()
        run_at = now + timedelta(seconds=delay)
        status = t.initial_status(continuation=parent is not None, run_at=run_at, now=now)
        new = NewJob(
            id=uuid7(now),
            job_type=JOB_TYPE,
            queue=self.queue,
            priority=priority,
            args=b"{}",
            max_attempts=max_attempts,
            status=status,
            run_at=run_at,
            enqueued_at=now,
            continues_job_id=parent,
        )
        job = ModelJob(
            id=new.id,
            state=t.JobState(status=status, max_attempts=max_attempts),
            priority=priority,
            run_at=run_at,
            parent=parent,
        )
        return new, job

    @initialize(jobs=st.lists(st.tuples(delays, priorities, max_attempts), min_size=1, max_size=3))
    def first_jobs(self, jobs: list[tuple[int, int, int]]) -> None:
        for delay, priority, attempts in jobs:
            self.enqueue(delay, priority, attempts, None)

    @precondition(lambda self: len(self.model.jobs) < MAX_JOBS)
    @rule(
        delay=delays,
        priority=priorities,
        max_attempts=max_attempts,
        parent=st.none() | pick,
    )
    def enqueue(self, delay: int, priority: int, max_attempts: int, parent: int | None) -> None:
        """A job, or a continuation of one of this example's jobs (maybe ended, maybe deleted)."""
        jobs = list(self.model.jobs.values())
        of = jobs[parent % len(jobs)] if parent is not None and jobs else None
        new, job = self._new_job(delay, priority, max_attempts, of.id if of else None)
        if of is not None and of.deleted:
            with pytest.raises(JobNotFoundError):
                self.run(self.storage.jobs.enqueue_many([new]))
            assert self.run(self.storage.inspection.get(new.id)) is None
            return
        [result] = self.run(self.storage.jobs.enqueue_many([new]))
        assert result.job_id == new.id and result.created
        self.model.enqueue(job, self.clock.now())

    # Claim and finish --------------------------------------------------------------------------

    @rule(owner=st.sampled_from([0, 1]), limit=st.integers(1, 3))
    def claim(self, owner: int, limit: int) -> None:
        now = self.clock.now()
        claimable = {job.id: job for job in self.model.live() if job.claimable(now)}
        limit = whole_ties(sorted(job.urgency for job in claimable.values()), limit)
        claimed = self.run(
            self.storage.jobs.claim(self.owners[owner], [JOB_TYPE], [self.queue], limit, LEASE)
        )
        ids = [job.id for job in claimed]
        assert set(ids) <= set(claimable) and len(set(ids)) == len(ids)
        assert len(ids) == min(limit, len(claimable))
        taken = [claimable[job_id].urgency for job_id in ids]
        left = [job.urgency for job_id, job in claimable.items() if job_id not in ids]
        assert taken == sorted(taken), "a claim returns the most urgent first"
        assert not left or not taken or max(taken) < min(left), "a claim takes the most urgent"
        for job in claimed:
            change = self.model.claim(job, self.owners[owner], now + timedelta(seconds=LEASE))
            assert job.attempt == change.attempt
            assert job.started_at == now

    def _outcome(self, kind: str) -> Outcome:
        if kind == "succeed":
            return Succeeded(result=b"1")
        if kind in ("fail", "fail permanently"):
            error = self._reason("E")
            return Failed(error=error, traceback="tb", retryable=kind == "fail")
        if kind == "release":
            return Released(reason=self._reason("shutdown"))
        return Cancelled(reason=self._reason("stopped"))

    def _completion(self, lease: ClaimedJob, owner: str, outcome: Outcome) -> Completion:
        now = self.clock.now()
        retry_at = t.retry_at(outcome, lease.attempt, lease.max_attempts, now, POLICY, self.rng)
        return Completion(
            job_id=lease.id,
            attempt=lease.attempt,
            lease_owner=owner,
            started_at=lease.started_at,
            ended_at=now,
            outcome=outcome,
            retry_at=retry_at,
            event_seq=lease.event_seq,
            start_seq=lease.event_seq,
        )

    # One rule per way an attempt ends (rather than one rule drawing it), so that finishing is
    # drawn about as often as the rest.

    @precondition(lambda self: self.model.running())
    @rule(index=pick)
    def succeed(self, index: int) -> None:
        self._finish(index, "succeed")

    @precondition(lambda self: self.model.running())
    @rule(index=pick, retryable=st.booleans())
    def fail(self, index: int, retryable: bool) -> None:
        self._finish(index, "fail" if retryable else "fail permanently")

    @precondition(lambda self: self.model.running())
    @rule(index=pick, cancelled=st.booleans())
    def stop(self, index: int, cancelled: bool) -> None:
        """The handler stopped: cancelled, or released at shutdown."""
        self._finish(index, "cancelled" if cancelled else "release")

    @precondition(lambda self: self.stale)
    @rule(index=pick, kind=st.sampled_from(FINISHES))
    def finish_late(self, index: int, kind: str) -> None:
        """The worker of an attempt that is over (its lease lost, or its outcome already in)
        reports an outcome: refused, nothing changes."""
        lease, owner = self.stale[index % len(self.stale)]
        item = self._completion(lease, owner, self._outcome(kind))
        assert self.run(self.storage.jobs.complete_many([item], lifecycle=False)).applied == 0

    def _finish(self, index: int, kind: str) -> None:
        """A running attempt's worker reports its outcome."""
        running = self.model.running()
        job = running[index % len(running)]
        lease, owner = job.lease, job.owner
        assert lease is not None and owner is not None
        item = self._completion(lease, owner, self._outcome(kind))
        recorded = self.run(self.storage.jobs.complete_many([item], lifecycle=False))
        assert recorded.applied == 1
        change = self.model.finish(item, self.clock.now())
        if change.attempt == lease.attempt:  # not given back: that attempt is over for good
            self.stale.append((lease, owner))

    # Leases ------------------------------------------------------------------------------------

    @precondition(lambda self: self.model.running())
    @rule(owner=st.sampled_from([0, 1]))
    def worker_dies(self, owner: int) -> None:
        """Its supervisor releases the leases of a worker that died: lost, counted."""
        self._release_owner(self.owners[owner], lost=True, reason="worker died")

    @precondition(lambda self: self.model.running())
    @rule(owner=st.sampled_from([0, 1]))
    def worker_drains(self, owner: int) -> None:
        """A draining worker gives back what it still holds: released, not counted."""
        self._release_owner(self.owners[owner], lost=False, reason="released at shutdown")

    def _release_owner(self, worker: str, *, lost: bool, reason: str) -> None:
        held = self.model.running(worker)
        count = self.run(self.storage.jobs.release_owner(worker, lost=lost, reason=reason))
        assert count == len(held)
        self._end_leases(held, lost=lost, reason=reason)

    @precondition(lambda self: self.model.running())
    @rule(owner=st.sampled_from([0, 1]))
    def renew(self, owner: int) -> None:
        worker = self.owners[owner]
        held = self.model.running(worker)
        pairs = [(job.id, job.state.attempt) for job in held]
        renewed = self.run(self.storage.jobs.extend_leases(worker, pairs, LEASE))
        assert renewed == {job.id for job in held}
        for job in held:
            job.lease_until = self.clock.now() + timedelta(seconds=LEASE)

    def _end_leases(self, jobs: list[ModelJob], *, lost: bool, reason: str) -> None:
        now = self.clock.now()
        for job in jobs:
            lease, owner = job.lease, job.owner
            assert lease is not None and owner is not None
            change = self.model.end_lease(job, lost=lost, reason=reason, now=now)
            if change.attempt == lease.attempt:
                self.stale.append((lease, owner))

    @rule(seconds=st.sampled_from([1, 6, LEASE + 1]), rescue=st.booleans())
    def time_passes(self, seconds: float, rescue: bool) -> None:
        """Time moves on; maybe maintenance then rescues the expired leases (lost, counted).
        Its continuation sweep finds nothing: each was settled when its parent ended."""
        self.clock.advance(seconds)
        if rescue:
            now = self.clock.now()
            ended = [job for job in self.model.running() if job.expired(now)]
            assert self.run(self.storage.maintenance.rescue_expired()) == len(ended)
            self._end_leases(ended, lost=True, reason="lease expired")
        assert self.run(self.storage.maintenance.resolve_continuations()) == 0

    # Operators ---------------------------------------------------------------------------------

    @precondition(lambda self: self.model.jobs)
    @rule(index=pick, action=st.sampled_from(["cancel", "retry", "delete"]))
    def operator(self, index: int, action: str) -> None:
        """An operator cancels, retries or deletes a job (one rule for the three, so that they
        do not crowd out the others)."""
        jobs = list(self.model.jobs.values())
        job = jobs[index % len(jobs)]
        {"cancel": self._cancel, "retry": self._retry, "delete": self._delete}[action](job)

    @precondition(lambda self: self.model.running())
    @rule(index=pick)
    def cancel_running(self, index: int) -> None:
        """An operator asks for a running job to stop (its worker has not noticed yet)."""
        running = self.model.running()
        self._cancel(running[index % len(running)])

    @precondition(lambda self: self.model.dead())
    @rule(index=pick)
    def retry_dead(self, index: int) -> None:
        dead = self.model.dead()
        self._retry(dead[index % len(dead)])

    def _cancel(self, job: ModelJob) -> None:
        reason = self._reason("cancelled by operator")
        if job.deleted:
            with pytest.raises(JobNotFoundError):
                self.run(self.storage.control.cancel(job.id, reason))
            return
        result = self.run(self.storage.control.cancel(job.id, reason))
        assert result is self.model.cancel(job, reason, self.clock.now())

    def _retry(self, job: ModelJob) -> None:
        if job.deleted:
            with pytest.raises(JobNotFoundError):
                self.run(self.storage.control.retry_job(job.id))
        elif job.state.status is JobStatus.DEAD:
            self.run(self.storage.control.retry_job(job.id))
            assert self.model.retry(job, self.clock.now())
        else:
            with pytest.raises(InvalidJobStateError, match=t.RETRY_REFUSED):
                self.run(self.storage.control.retry_job(job.id))
            assert not self.model.retry(job, self.clock.now())

    def _delete(self, job: ModelJob) -> None:
        if job.deleted:
            with pytest.raises(JobNotFoundError):
                self.run(self.storage.control.delete_job(job.id))
        elif t.may_delete(job.state):
            self.run(self.storage.control.delete_job(job.id))
            assert self.model.delete(job, self.clock.now())
        else:
            with pytest.raises(InvalidJobStateError, match=t.DELETE_REFUSED):
                self.run(self.storage.control.delete_job(job.id))

    # The comparison ----------------------------------------------------------------------------

    @invariant()
    def every_job_is_as_the_model_says(self) -> None:
        for job in self.model.jobs.values():
            self.run(self._compare(job))

    async def _compare(self, job: ModelJob) -> None:
        record = await self.storage.inspection.get(job.id)
        attempts = await self.storage.inspection.attempts(job.id)
        events = await self.storage.events.read_events(job.id, 0, 1000)
        if job.deleted:
            assert (record, attempts, events) == (None, [], []), job.id
            return
        assert record is not None, job.id
        state = job.state
        assert (record.status, record.attempt, record.max_attempts) == (
            state.status,
            state.attempt,
            state.max_attempts,
        ), job
        assert (record.error, record.traceback) == (job.error, job.traceback), job
        assert record.lease_owner == job.owner, job
        assert (record.completed_at is not None) is state.status.is_terminal, job
        assert (record.expires_at is not None) is state.status.is_terminal, job
        if not state.status.is_terminal:
            assert record.run_at == job.run_at, job
        assert [(a.attempt, a.outcome, a.error) for a in attempts] == job.attempts, job
        assert [event.seq for event in events] == list(range(1, len(events) + 1)), events
        lifecycle = [
            event.decoded(Lifecycle) for event in events if event.kind is EventKind.LIFECYCLE
        ]
        said = [(life.status, life.attempt, life.error, life.retry_at) for life in lifecycle]
        assert said == job.lifecycle, job


def whole_ties(urgencies: list[tuple[int, datetime]], limit: int) -> int:
    """The claim limit nearest `limit` (below it, else above) that splits no group of equally
    urgent jobs: which of those a backend takes is its own choice, and a replayed example must
    take the same way, or Hypothesis cannot shrink it."""
    if limit >= len(urgencies):
        return limit
    fewer = limit
    while fewer > 0 and urgencies[fewer - 1] == urgencies[fewer]:
        fewer -= 1
    if fewer > 0:
        return fewer
    more = limit
    while more < len(urgencies) and urgencies[more - 1] == urgencies[more]:
        more += 1
    return more
