"""A stored jobworker job, read back as Django's `TaskResult`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.conf import settings as django_settings
from django.utils import timezone
from django.utils.module_loading import import_string

from jobworker.contrib.django.compat import (
    Task,
    TaskError,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
)
from jobworker.contrib.django.errors import class_path_of
from jobworker.models import AttemptOutcome, AttemptRecord, JobDescriptor, JobStatus

# A job whose attempt failed but that will be retried is ready to run again, as Django's
# READY says; a cancelled job did not succeed and will not run: FAILED.
STATUSES = {
    JobStatus.QUEUED: TaskResultStatus.READY,
    JobStatus.SCHEDULED: TaskResultStatus.READY,
    JobStatus.AWAITING: TaskResultStatus.READY,
    JobStatus.FAILED: TaskResultStatus.READY,
    JobStatus.RUNNING: TaskResultStatus.RUNNING,
    JobStatus.SUCCEEDED: TaskResultStatus.SUCCESSFUL,
    JobStatus.DEAD: TaskResultStatus.FAILED,
    JobStatus.CANCELLED: TaskResultStatus.FAILED,
}
_FAILED_OUTCOMES = {AttemptOutcome.FAILED, AttemptOutcome.DEAD, AttemptOutcome.LOST}
CANCELLED_ERROR = "jobworker.errors.JobCancelledError"


def task_of(job_type: str, result_id: str) -> Any:
    """The Django task a job type names (its module path), or TaskResultDoesNotExist."""
    try:
        task = import_string(job_type)
    except ImportError:
        task = None
    if not isinstance(task, Task):
        raise TaskResultDoesNotExist(f"{result_id} is not a Django task's job ({job_type!r})")
    return task


def to_task_result(
    job: JobDescriptor, attempts: Sequence[AttemptRecord], result_id: str, alias: str
) -> Any:
    task = task_of(job.job_type, result_id)
    if (task.backend, task.queue_name, task.priority) != (alias, job.queue, job.priority):
        # As it was enqueued, so that `result.refresh()` asks this backend again.
        task = task.using(backend=alias, queue_name=job.queue, priority=job.priority)
    arguments = job.args if isinstance(job.args, dict) else {}
    counted = [a for a in attempts if a.outcome is not AttemptOutcome.RELEASED]
    errors = [
        TaskError(
            exception_class_path=class_path_of(a.error, a.traceback),
            traceback=a.traceback or a.error or "",
        )
        for a in counted
        if a.outcome in _FAILED_OUTCOMES
    ]
    if job.status is JobStatus.CANCELLED:
        errors.append(
            TaskError(exception_class_path=CANCELLED_ERROR, traceback=job.error or "cancelled")
        )
    status = STATUSES[job.status]
    result = TaskResult(
        task=task,
        id=result_id,
        status=status,
        enqueued_at=_local(job.enqueued_at),
        started_at=_local(job.started_at),
        finished_at=_local(job.completed_at) if job.status.is_terminal else None,
        last_attempted_at=_local(job.started_at),  # the latest attempt's start
        args=list(arguments.get("args") or []),
        kwargs=dict(arguments.get("kwargs") or {}),
        backend=alias,
        errors=errors,
        worker_ids=[a.worker for a in counted],
    )
    if status == TaskResultStatus.SUCCESSFUL:
        object.__setattr__(result, "_return_value", job.result)
    return result


def _local(at: datetime | None) -> datetime | None:
    """jobworker's UTC times as Django expects them: aware with USE_TZ, else naive local."""
    if at is None or django_settings.USE_TZ:
        return at
    naive: datetime = timezone.make_naive(at)
    return naive
