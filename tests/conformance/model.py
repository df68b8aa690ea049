"""A pure in-memory job store built on jobworker.transitions: what every backend must do.

`test_model.py` drives a backend and this model with the same random operations and compares
them after each step. The model never decides a rule itself: each operation asks the transitions
module what happens and only records it (the attempt rows, the lifecycle events, the error).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from jobworker import transitions as t
from jobworker.models import (
    AttemptOutcome,
    CancelResult,
    ClaimedJob,
    Completion,
    JobStatus,
)
from jobworker.storage.base import outcome_row
from jobworker.transitions import ErrorEffect, JobState, Transition

# What a lifecycle event says of the error: a failed, dead, cancelled or queued job's only.
KEEPS_ERROR = (JobStatus.FAILED, JobStatus.DEAD, JobStatus.CANCELLED, JobStatus.QUEUED)
CLAIMABLE = (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.FAILED)

Attempt = tuple[int, AttemptOutcome, str | None]  # its number, outcome and error
# What a lifecycle event says: the status, attempt, error and (of a failed job) retry_at.
Lifecycle = tuple[JobStatus, int, str | None, datetime | None]


@dataclass
class ModelJob:
    id: uuid.UUID
    state: JobState
    priority: int
    run_at: datetime
    parent: uuid.UUID | None = None
    error: str | None = None
    traceback: str | None = None
    lease: ClaimedJob | None = None  # the running attempt, as its worker holds it
    owner: str | None = None
    lease_until: datetime | None = None
    attempts: list[Attempt] = field(default_factory=list)
    lifecycle: list[Lifecycle] = field(default_factory=list)
    deleted: bool = False

    @property
    def urgency(self) -> tuple[int, datetime]:
        """The order claims take jobs in: higher priority first, then the earlier run_at."""
        return (-self.priority, self.run_at)

    def expired(self, now: datetime) -> bool:
        """Its lease has expired: a rescue ends it."""
        return self.lease_until is not None and self.lease_until < now

    def claimable(self, now: datetime) -> bool:
        return not self.deleted and self.state.status in CLAIMABLE and self.run_at <= now


class Model:
    def __init__(self) -> None:
        self.jobs: dict[uuid.UUID, ModelJob] = {}

    def live(self) -> list[ModelJob]:
        return [job for job in self.jobs.values() if not job.deleted]

    def dead(self) -> list[ModelJob]:
        return [job for job in self.live() if job.state.status is JobStatus.DEAD]

    def running(self, owner: str | None = None) -> list[ModelJob]:
        return [
            job
            for job in self.live()
            if job.state.status is JobStatus.RUNNING and owner in (None, job.owner)
        ]

    # Operations ------------------------------------------------------------------------------

    def enqueue(self, job: ModelJob, now: datetime) -> None:
        """A new job; a continuation of a parent that has already ended is settled at once."""
        self.jobs[job.id] = job
        parent = self.jobs.get(job.parent) if job.parent else None
        if parent is not None:
            self._settle_one(job, parent.id, self._ended_status(parent), now)

    def claim(self, claimed: ClaimedJob, owner: str, lease_until: datetime) -> Transition:
        job = self.jobs[claimed.id]
        change = t.claim(job.state)
        self._apply(job, change)
        job.lease, job.owner, job.lease_until = claimed, owner, lease_until
        return change

    def finish(self, item: Completion, now: datetime) -> Transition:
        job = self.jobs[item.job_id]
        change = t.after_attempt(job.state, item.outcome, item.retry_at)
        row = outcome_row(item, 0.0)
        self._apply(job, change, error=row.error, traceback=row.traceback, attempt_error=row.error)
        self._after(job, change, now)
        return change

    def end_lease(self, job: ModelJob, *, lost: bool, reason: str, now: datetime) -> Transition:
        assert job.owner is not None
        change = t.end_lease(job.state, lost=lost, now=now)
        error = t.lease_end_error(reason, job.owner)
        self._apply(job, change, error=error, attempt_error=error)
        self._after(job, change, now)
        return change

    def cancel(self, job: ModelJob, reason: str, now: datetime) -> CancelResult:
        decision = t.cancel(job.state)
        if decision.transition is not None:
            self._apply(job, decision.transition, error=reason)
            self._after(job, decision.transition, now)
        return decision.result

    def retry(self, job: ModelJob, now: datetime) -> bool:
        change = t.retry(job.state, now)
        if change is not None:
            self._apply(job, change)
        return change is not None

    def delete(self, job: ModelJob, now: datetime) -> bool:
        if not t.may_delete(job.state):
            return False
        job.deleted = True
        self._settle_children(job.id, None, t.parent_ended_reason(job.id, None), now)
        return True

    # How a change is recorded -------------------------------------------------------------------

    def _apply(
        self,
        job: ModelJob,
        change: Transition,
        *,
        error: str | None = None,
        traceback: str | None = None,
        attempt_error: str | None = None,
    ) -> None:
        if change.recorded is not None:
            job.attempts.append((job.state.attempt, change.recorded, attempt_error))
        if change.error is ErrorEffect.SET:
            job.error = error
        elif change.error is ErrorEffect.CLEAR:
            job.error = None
        if change.traceback is not ErrorEffect.KEEP:
            job.traceback = traceback if change.traceback is ErrorEffect.SET else None
        if change.run_at is not None:
            job.run_at = change.run_at
        if job.state.status is JobStatus.RUNNING and change.status is not JobStatus.RUNNING:
            job.lease, job.owner, job.lease_until = None, None, None
        job.state = change.state
        if change.changed:
            said = job.error if change.status in KEEPS_ERROR else None
            retry_at = job.run_at if change.status is JobStatus.FAILED else None
            job.lifecycle.append((change.status, change.attempt, said, retry_at))

    def _after(self, job: ModelJob, change: Transition, now: datetime) -> None:
        if change.ends_job:
            status = change.status
            reason = t.parent_ended_reason(job.id, status)
            self._settle_children(job.id, status, reason, now)

    def _settle_children(
        self, parent: uuid.UUID, status: JobStatus | None, reason: str, now: datetime
    ) -> None:
        """Its continuations, and down the chain those of each one cancelled, with the reason of
        the job whose end started it."""
        for child in self.live():
            if child.parent != parent:
                continue
            change = t.after_parent(child.state, status, run_at=child.run_at, now=now)
            if change is None:
                continue
            self._apply(child, change, error=reason)
            if change.status is JobStatus.CANCELLED:
                self._settle_children(child.id, status, reason, now)

    def _settle_one(
        self, child: ModelJob, parent: uuid.UUID, status: JobStatus | None, now: datetime
    ) -> None:
        change = t.after_parent(child.state, status, run_at=child.run_at, now=now)
        if change is not None:
            self._apply(child, change, error=t.parent_ended_reason(parent, status))

    def _ended_status(self, parent: ModelJob) -> JobStatus | None:
        """The parent's status as a continuation sees it (None: it was deleted)."""
        return None if parent.deleted else parent.state.status
