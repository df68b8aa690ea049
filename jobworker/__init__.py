"""jobworker: durable, typed, streaming background jobs for Python."""

from jobworker._version import __version__
from jobworker.app import App, default_app
from jobworker.client import Client
from jobworker.config import Settings
from jobworker.context import JobContext
from jobworker.definitions import JobDefinition, JobFunction, Registry, job
from jobworker.errors import (
    ConfigurationError,
    DefinitionError,
    DuplicateJobError,
    InvalidJobStateError,
    JobArgumentsError,
    JobCancelledError,
    JobEventError,
    JobFailedError,
    JobNotFoundError,
    JobworkerError,
    MissingExtraError,
    PermanentJobError,
    ResultTimeoutError,
    SchemaMissingError,
    UnknownJobError,
)
from jobworker.events.model import TypedEvent
from jobworker.handle import JobHandle
from jobworker.models import (
    AttemptOutcome,
    AttemptRecord,
    CancelResult,
    EventKind,
    JobDescriptor,
    JobEvent,
    JobKind,
    JobStatus,
    QueueInfo,
    ScheduleOptions,
    WorkerInfo,
    WorkerRole,
)
from jobworker.recurring import BeatStatus, RecurringJob

__all__ = [
    "App",
    "AttemptOutcome",
    "AttemptRecord",
    "BeatStatus",
    "CancelResult",
    "Client",
    "ConfigurationError",
    "DefinitionError",
    "DuplicateJobError",
    "EventKind",
    "InvalidJobStateError",
    "JobArgumentsError",
    "JobCancelledError",
    "JobContext",
    "JobDefinition",
    "JobDescriptor",
    "JobEvent",
    "JobEventError",
    "JobFailedError",
    "JobFunction",
    "JobHandle",
    "JobKind",
    "JobNotFoundError",
    "JobStatus",
    "JobworkerError",
    "MissingExtraError",
    "PermanentJobError",
    "QueueInfo",
    "RecurringJob",
    "Registry",
    "ResultTimeoutError",
    "ScheduleOptions",
    "SchemaMissingError",
    "Settings",
    "TypedEvent",
    "UnknownJobError",
    "WorkerInfo",
    "WorkerRole",
    "__version__",
    "default_app",
    "job",
]
