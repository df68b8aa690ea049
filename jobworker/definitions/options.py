"""The options `@job(...)` declares, written once: one struct, its keyword typing, its checks."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, Literal, TypedDict

import msgspec

from jobworker.cron import cron_error, timezone_error
from jobworker.errors import DefinitionError
from jobworker.models import JobKind

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,199}$")


class JobOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything `@job(...)` says about a job besides its function. A `JobDefinition` is these
    options (with `name`, `display_name` and `description` resolved) plus what the function's
    signature says. Enqueue-time `ScheduleOptions` fall back to them."""

    name: str | None = None
    display_name: str | None = None
    description: str | None = None
    icon: str | None = None
    kind: JobKind = JobKind.USER
    max_attempts: int | None = None
    queue: str | None = None
    priority: int = 0
    timeout: float | None = None
    result_ttl: float | None = None
    cron: str | None = None
    timezone: str | None = None
    concurrency: int | None = None  # how many of this job run at once, across every worker


class JobOptionKeywords(TypedDict, total=False):
    """The keywords of `@job(...)`, as a type checker sees them (the fields of `JobOptions`;
    `kind` may also be given as its string)."""

    name: str | None
    display_name: str | None
    description: str | None
    icon: str | None
    kind: JobKind | Literal["user", "system"]
    max_attempts: int | None
    queue: str | None
    priority: int
    timeout: float | None
    result_ttl: float | None
    cron: str | None
    timezone: str | None
    concurrency: int | None


def parse_options(keywords: Mapping[str, Any], job_name: str) -> JobOptions:
    """`@job`'s keywords as checked `JobOptions`; every problem is a `DefinitionError`."""
    try:
        options = msgspec.convert(keywords, JobOptions)
    except msgspec.ValidationError as exc:
        problem = "kind must be 'user' or 'system'" if "$.kind" in str(exc) else str(exc)
        raise DefinitionError(f"job {job_name!r}: {problem}") from None
    for problem in _problems(options):
        raise DefinitionError(f"job {job_name!r}: {problem}")
    return options


def _problems(options: JobOptions) -> Iterator[str]:
    if options.max_attempts is not None and options.max_attempts < 1:
        yield "max_attempts must be at least 1"
    if options.timeout is not None and options.timeout <= 0:
        yield "timeout must be greater than 0"
    if options.result_ttl is not None and options.result_ttl < 0:
        yield "result_ttl must not be negative"
    if options.queue is not None and not NAME_PATTERN.match(options.queue):
        yield f"invalid queue name {options.queue!r}"
    if options.concurrency is not None and options.concurrency < 1:
        yield "concurrency must be at least 1"
    yield from _schedule_problems(options.cron, options.timezone)
    if options.cron is not None and options.kind is JobKind.USER:
        yield (
            "cron= registers a recurring job, which is a system job: add kind='system', "
            "or schedule it with client.schedule_recurring(...)"
        )


def _schedule_problems(cron: str | None, timezone: str | None) -> Iterator[str]:
    problem = (cron_error(cron) if cron is not None else None) or (
        timezone_error(timezone) if timezone is not None else None
    )
    if problem:
        yield problem
    if timezone is not None and cron is None:
        yield "timezone is only used with cron=..."
