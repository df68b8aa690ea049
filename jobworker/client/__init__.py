"""Enqueueing and reading jobs: what `.delay()` and the CLI use.

Every operation is written once, as an `a`-prefixed coroutine; its blocking twin (`get` for
`aget`, ...) is derived from it by `portal.Blocking` and runs it on the client's portal. The
client is assembled from one part per seam, each building on the last:

- `base`: the storage provider, registry, settings, clock and portal they share.
- `inspection`: get, list, results, counts, queues; cancel, retry, delete, pause, resume.
- `events`: a page of stored events, and streams that follow a job live.
- `enqueue`: a call into stored jobs, and handles to them.
- `recurring`: recurring definitions and beat's status.
- `workers`: the worker registry (supervisors, worker processes, beat).
- `catalogue`: the job-type catalogue (kinds, display names, icons of every declared type).
- `dashboard`: an overview's counts that stay cheap on a big table, and throughput.
"""

from jobworker.client.base import StorageProvider, as_job_id, describe
from jobworker.client.dashboard import Dashboard


class Client(Dashboard):
    """Enqueue jobs and read their state. Every `aname` coroutine has a blocking twin `name`."""


__all__ = ["Client", "StorageProvider", "as_job_id", "describe"]
