"""A process writing to a SQLite file through jobworker's storage, for the group commit tests
(tests/test_sqlite_group_commit.py).

    python -m sqlite_writers crash PATH
        Enqueues two jobs and queues a write call that ends the process (`os._exit`) inside the
        same group. Prints "queued" once the three calls wait for the write lock, and reads a
        line before it lets them go (the test holds the lock until then). The call exits with 3
        if it saw both jobs inside the group's transaction, with 4 if not.

    python -m sqlite_writers write PATH CALLS TAG
        Reads a line (the start signal), then makes CALLS one-job enqueues, 20 waiting at a
        time, with the queue TAG; prints "<commits> <calls>" of its connection at the end.
"""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime

from jobworker.ids import uuid7
from jobworker.models import JobStatus, NewJob
from jobworker.storage.sqlite.connection import Session
from jobworker.storage.sqlite.storage import SQLiteStorage


def new_job(queue: str) -> NewJob:
    now = datetime.now(UTC)
    return NewJob(
        id=uuid7(now),
        job_type="t.noop",
        queue=queue,
        priority=0,
        args=b"{}",
        max_attempts=3,
        status=JobStatus.QUEUED,
        run_at=now,
        enqueued_at=now,
    )


async def crash(path: str) -> None:
    storage = SQLiteStorage(f"sqlite:///{path}")
    await storage.open()
    first, second = new_job("crash"), new_job("crash")

    def die(session: Session) -> None:
        seen = [session.one("job_state", {"id": str(job.id)}) for job in (first, second)]
        os._exit(3 if all(row is not None for row in seen) else 4)

    calls = [
        asyncio.create_task(storage.jobs.enqueue_many([first])),
        asyncio.create_task(storage.jobs.enqueue_many([second])),
        asyncio.create_task(storage._db.write(die)),
    ]
    await asyncio.sleep(0)  # each task runs to its write call, which queues it at once
    print("queued", flush=True)
    sys.stdin.readline()
    await asyncio.gather(*calls)
    raise SystemExit("the process outlived its group")


async def write(path: str, calls: int, tag: str) -> None:
    storage = SQLiteStorage(f"sqlite:///{path}")
    await storage.open()
    sys.stdin.readline()
    for start in range(0, calls, 20):
        batch = [new_job(tag) for _ in range(min(20, calls - start))]
        await asyncio.gather(*(storage.jobs.enqueue_many([job]) for job in batch))
    print(*storage._db.commits, flush=True)
    await storage.close()


def main() -> None:
    mode, path, *rest = sys.argv[1:]
    if mode == "crash":
        asyncio.run(crash(path))
    else:
        calls, tag = rest
        asyncio.run(write(path, int(calls), tag))


if __name__ == "__main__":
    main()
