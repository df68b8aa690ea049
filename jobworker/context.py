"""The context every handler receives as its first argument."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Generic, TypeVar

from jobworker.errors import JobCancelledError

P = TypeVar("P")

logger = logging.getLogger("jobworker.job")


class JobContext(Generic[P]):
    """What a running handler knows about its job, and the way it reports back.

    `P` is the job's progress type (`JobContext[ExportProgress]`); handlers that report no typed
    progress annotate plain `JobContext`.
    """

    def __init__(
        self,
        *,
        job_id: uuid.UUID,
        job_type: str,
        attempt: int,
        max_attempts: int,
        queue: str,
        enqueued_at: datetime,
        worker_id: str = "",
    ) -> None:
        self.job_id = job_id
        self.job_type = job_type
        self.attempt = attempt
        self.max_attempts = max_attempts
        self.queue = queue
        self.enqueued_at = enqueued_at
        self.worker_id = worker_id
        self._cancelled = False
        self._logger: logging.LoggerAdapter[logging.Logger] | None = None

    @property
    def correlation_id(self) -> str:
        return self.job_id.hex

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger whose records carry the job's id, name and attempt."""
        if self._logger is None:
            extra = {"job_id": str(self.job_id), "job_type": self.job_type, "attempt": self.attempt}
            self._logger = logging.LoggerAdapter(logger, extra)
        return self._logger

    @property
    def is_last_attempt(self) -> bool:
        return self.attempt >= self.max_attempts

    @property
    def cancel_requested(self) -> bool:
        """True once the job has been asked to stop (shutdown past the drain timeout, cancel)."""
        return self._cancelled

    def raise_if_cancelled(self) -> None:
        if self._cancelled:
            raise JobCancelledError(f"job {self.job_id} was asked to stop")

    def request_cancel(self) -> None:
        """Called by the worker; handlers observe it through `cancel_requested`."""
        self._cancelled = True  # a plain flag: read from handler threads, set from the loop

    def __repr__(self) -> str:
        return f"<JobContext {self.job_type} {self.job_id} attempt {self.attempt}>"
