"""Waiting jobs of types the loaded app does not define: a warning on stderr.

jobworker keeps no record of which job types running workers serve (a worker claims only the
types its module defines). The one thing a command can say honestly is what the app it loaded
(`--app`) defines: a waiting job of another type is run only by a worker whose module defines
it, and waits forever if none runs. Without `--app` there is nothing to compare with, and
nothing is said.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import click

from jobworker.client import Client
from jobworker.models import JobDescriptor, JobStatus

# Enough to see a forgotten type without reading a whole backlog.
QUEUED_SAMPLE = 1000

_WAITING = frozenset({JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.AWAITING})


def unserved_types(jobs: Iterable[JobDescriptor], defined: Iterable[str]) -> Counter[str]:
    """How many of the waiting `jobs` there are of each type not in `defined`."""
    known = set(defined)
    return Counter(
        job.job_type for job in jobs if job.status in _WAITING and job.job_type not in known
    )


def warn_unserved(client: Client, jobs: Iterable[JobDescriptor], subject: str) -> None:
    """Print the warning for `jobs`, if the app defines any job. `subject` names them, with
    `{n}` for their number."""
    defined = client.registry.names()
    if not defined:
        return
    counts = unserved_types(jobs, defined)
    if counts:
        click.echo(unserved_warning(counts, subject), err=True)


def warn_unserved_queued(client: Client) -> None:
    """The warning for the newest queued jobs, up to QUEUED_SAMPLE of them."""
    if client.registry.names():
        sample = client.list(status=JobStatus.QUEUED, limit=QUEUED_SAMPLE)
        warn_unserved(client, sample, f"{{n}} of the newest {QUEUED_SAMPLE} queued jobs")


def unserved_warning(counts: Counter[str], subject: str) -> str:
    types = ", ".join(f"{_printable(name)} ({count})" for name, count in counts.most_common())
    return (
        f"warning: {subject.format(n=counts.total())} are of a type the app loaded with --app "
        f"does not define: {types}. Only a worker whose module defines a type runs it; if none "
        "runs, these jobs wait forever."
    )


def _printable(name: str) -> str:
    """A type name read from the database, with control characters escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)
