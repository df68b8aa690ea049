"""Every error jobworker raises on purpose derives from `JobworkerError`."""

from __future__ import annotations


class JobworkerError(Exception):
    """Base class of jobworker's own errors."""


class ConfigurationError(JobworkerError):
    """A setting, URL or option that cannot work (bad database URL, naive run_at, ...)."""


class MissingExtraError(ConfigurationError):
    """An optional dependency is needed for what was asked; the message names the extra."""

    def __init__(self, module: str, extra: str) -> None:
        super().__init__(
            f"{module!r} is not installed; install it with: pip install 'jobworker[{extra}]'"
        )
        self.module = module
        self.extra = extra


class DefinitionError(JobworkerError):
    """A `@job` definition that cannot be used (bad signature, duplicate name, bad option)."""


class DuplicateJobError(DefinitionError):
    """Two jobs registered under one name."""


class UnknownJobError(JobworkerError):
    """A job name that no loaded module defines."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown job {name!r}: no @job with this name is registered")
        self.name = name


class JobArgumentsError(JobworkerError, ValueError):
    """Arguments that do not match the job's signature; nothing was stored."""

    def __init__(self, job_name: str, detail: str) -> None:
        super().__init__(f"invalid arguments for job {job_name!r}: {detail}")
        self.job_name = job_name
        self.detail = detail


class JobEventError(JobworkerError, TypeError):
    """A handler emitted an event its job's types do not allow (or msgspec cannot encode)."""


class JobNotFoundError(JobworkerError, LookupError):
    """No job has this id."""

    def __init__(self, job_id: object) -> None:
        super().__init__(f"no job with id {job_id}")
        self.job_id = job_id


class DatabaseUnreachableError(ConfigurationError):
    """The database server could not be reached (refused, timed out, starting up or shutting
    down): a wrong address, or an outage. A worker waits for it; a command reports it."""


class SchemaMissingError(ConfigurationError):
    """The database has no (or an outdated) jobworker schema."""


class AppImportError(JobworkerError):
    """The module named on the command line could not be imported."""


class PermanentJobError(JobworkerError):
    """Raise from a handler to fail the job at once, without retries (it goes `dead`)."""


class JobCancelledError(JobworkerError):
    """The job was cancelled: raised by `ctx.raise_if_cancelled()` inside a handler that has been
    asked to stop, and by `handle.result()` for a cancelled job."""


class JobFailedError(JobworkerError):
    """`handle.result()` of a job that ended `dead`; carries the stored error and traceback."""

    def __init__(self, job_id: object, error: str | None, traceback: str | None) -> None:
        super().__init__(f"job {job_id} is dead: {error or 'no error recorded'}")
        self.job_id = job_id
        self.error = error
        self.traceback = traceback


class ResultTimeoutError(JobworkerError, TimeoutError):
    """`handle.result(timeout=...)` gave up before the job finished (the job goes on)."""


class InvalidJobStateError(JobworkerError):
    """An operation that the job's current status does not allow (retrying a queued job...)."""

    def __init__(self, job_id: object, status: str, detail: str) -> None:
        super().__init__(f"job {job_id} is {status}: {detail}")
        self.job_id = job_id
        self.status = status
