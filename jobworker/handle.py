"""The handle `.delay()` returns: a job id, and a way back to the job's state."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

R = TypeVar("R")

if TYPE_CHECKING:
    from jobworker.models import CancelResult, JobDescriptor


class JobSource(Protocol):
    """What a handle needs from a client to look its job up."""

    def get(self, job_id: uuid.UUID) -> JobDescriptor | None: ...

    async def aget(self, job_id: uuid.UUID) -> JobDescriptor | None: ...

    def result(self, job_id: uuid.UUID, timeout: float | None = None) -> Any: ...

    async def aresult(self, job_id: uuid.UUID, timeout: float | None = None) -> Any: ...

    def stream_typed(
        self, job_id: uuid.UUID, last_event_id: str | int | None = None
    ) -> AsyncIterator[Any]: ...

    def cancel(self, job_id: uuid.UUID, reason: str = "cancelled") -> CancelResult: ...

    async def acancel(self, job_id: uuid.UUID, reason: str = "cancelled") -> CancelResult: ...


class JobHandle(Generic[R]):
    """A reference to one enqueued job. `R` is the job's result type."""

    __slots__ = ("_source", "created", "job_id", "job_type")

    def __init__(
        self, job_id: uuid.UUID, job_type: str, source: JobSource, *, created: bool = True
    ) -> None:
        self.job_id = job_id
        self.job_type = job_type
        # False when an idempotency key collapsed this enqueue onto an existing job.
        self.created = created
        self._source = source

    def get(self) -> JobDescriptor | None:
        """The job's current state, or None once it has been purged."""
        return self._source.get(self.job_id)

    async def aget(self) -> JobDescriptor | None:
        return await self._source.aget(self.job_id)

    def result(self, timeout: float | None = None) -> R:
        """Wait for the job to finish and return its result, decoded to the job's return type.

        Raises `JobFailedError` (with the stored error) if it ends dead, `JobCancelledError` if
        it is cancelled, and `ResultTimeoutError` if `timeout` seconds pass first.
        """
        return self._source.result(self.job_id, timeout)  # type: ignore[no-any-return]

    async def aresult(self, timeout: float | None = None) -> R:
        return await self._source.aresult(self.job_id, timeout)  # type: ignore[no-any-return]

    def stream(self, last_event_id: str | int | None = None) -> AsyncIterator[Any]:
        """Follow the job's events as `TypedEvent`s (see `Client.stream_typed`): progress as the
        job's progress type, the result as its return type; ends after its terminal event."""
        return self._source.stream_typed(self.job_id, last_event_id)

    def cancel(self, reason: str = "cancelled") -> CancelResult:
        """Cancel the job, as `Client.cancel` does: a waiting job at once (with the
        continuations waiting on it), a running one by asking its worker to stop it; a finished
        one is left as it is (`CancelResult.FINISHED`)."""
        return self._source.cancel(self.job_id, reason)

    async def acancel(self, reason: str = "cancelled") -> CancelResult:
        return await self._source.acancel(self.job_id, reason)

    def __repr__(self) -> str:
        return f"<JobHandle {self.job_type} {self.job_id}>"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, JobHandle) and other.job_id == self.job_id

    def __hash__(self) -> int:
        return hash(self.job_id)
