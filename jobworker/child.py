"""The processes the supervisor forks: worker processes, the helper that releases the leases
of workers that are gone (release.py), the one that removes the supervisor's own row from
the worker registry as it stops (registration.py), and the one that serves its health port
(health/probe.py).

A forked process starts with a copy of the supervisor: its signal handlers, its wake-up pipe and
the heartbeat pipes of the other children. `detach` drops them and asks the kernel to signal the
process when the supervisor dies, before it does anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import setproctitle

from jobworker import tracing
from jobworker.app import App
from jobworker.health.probe import ProbeState, serve
from jobworker.registration import unregister
from jobworker.release import Release, release_leases
from jobworker.worker import Worker, WorkerOptions

__all__ = [
    "Origin",
    "farewell_main",
    "fork",
    "health_main",
    "releaser_main",
    "set_worker_title",
    "worker_main",
]

logger = logging.getLogger("jobworker.supervisor")

_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Origin:
    """What a forked process takes from the supervisor."""

    app: App
    parent: int  # the supervisor's pid
    inherited: Sequence[int]  # the supervisor's descriptors: closed in the child at once
    module: str  # the job module, for process titles ("" if none)

    def title(self, state: str) -> None:
        module = f" [{self.module}]" if self.module else ""
        setproctitle.setproctitle(f"jobworker: {state}{module}")


def fork(body: Callable[[], int], crashed: str, log: logging.Logger) -> int:
    """In the parent: the pid of a new process that runs `body` and exits with the code it
    returns (1, with `crashed` and the traceback logged to `log`, if it raises)."""
    pid = os.fork()
    if pid:
        return pid
    code = 1  # pragma: no cover - runs in the child, measured by the process tests
    try:  # pragma: no cover
        code = body()
    except BaseException:  # pragma: no cover
        log.exception(crashed)
    finally:  # pragma: no cover
        tracing.flush()  # os._exit runs no atexit hook, where the SDK would export the rest
        logging.shutdown()
        os._exit(code)


def detach(origin: Origin, on_parent_death: int) -> bool:
    """In a process just forked: drop the supervisor's signal handling and descriptors, and get
    `on_parent_death` when it dies. False if it has died already."""
    signal.set_wakeup_fd(-1)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    for fd in origin.inherited:
        os.close(fd)
    _die_with_parent(on_parent_death)
    return os.getppid() == origin.parent  # else it died before prctl took effect


def releaser_main(origin: Origin, releases: list[Release]) -> int:
    """Body of the helper that releases leases; returns its exit code. Stop signals meant for
    the workers (a terminal's Ctrl-C, a service manager's SIGTERM to the group) do not cut a
    release short: the supervisor waits for it, and kills it at its stop deadline."""
    if not _detach_helper(origin):
        return 0
    origin.title("supervisor, releasing leases")
    return release_leases(origin.app, releases)


def farewell_main(origin: Origin, row_id: str) -> int:
    """Body of the helper that removes the stopping supervisor's row `row_id` from the worker
    registry; returns its exit code. Stop signals do not cut it short (as `releaser_main`)."""
    if not _detach_helper(origin):
        return 0
    origin.title("supervisor, leaving the worker registry")

    async def leave() -> None:
        storage = origin.app.create_storage()
        await storage.open()
        try:
            await unregister(storage, row_id)
        finally:
            await storage.close()

    try:
        asyncio.run(leave())
    except Exception as exc:  # the storage could not be opened
        logger.warning(
            "could not remove the supervisor's row from the worker registry (%s: %s); the "
            "janitor marks it gone once its heartbeat is stale",
            type(exc).__name__,
            exc,
        )
        return 1
    return 0


def health_main(
    origin: Origin, sock: socket.socket, control_fd: int, row_id: str, workers: int
) -> int:
    """Body of the process that serves the health port on `sock` for the supervisor whose row
    in the worker registry is `row_id` and which runs `workers` worker processes; it serves
    until `control_fd` ends. Killed with the supervisor; its stop signals make `/readyz` answer
    503 (health/probe.py)."""
    if not detach(origin, signal.SIGKILL):
        return 0
    host, port = sock.getsockname()[:2]
    origin.title(f"supervisor, health probes on {host}:{port}")
    origin.app.application_name = "jobworker health"
    state = ProbeState(
        supervisor_pid=origin.parent,
        supervisor_row=row_id,
        workers=workers,
        settings=origin.app.settings,
        create_storage=origin.app.create_storage,
    )
    return serve(sock, state, control_fd)


def _detach_helper(origin: Origin) -> bool:
    """`detach` for a helper the supervisor waits for: killed with it, deaf to stop signals."""
    if not detach(origin, signal.SIGKILL):
        return False
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    return True


def worker_main(origin: Origin, options: WorkerOptions, index: int, beat_fd: int) -> int:
    """Body of a worker process; returns its exit code."""
    if not detach(origin, signal.SIGTERM):
        return 0
    # What the process inherited (modules, the app, the registry) lives as long as it does:
    # out of the collector's reach, a full collection no longer walks it. With 100 slots this
    # took the collector's time from 13 to 4 µs per job (docs/performance.md).
    gc.freeze()
    module = f" [{origin.module}]" if origin.module else ""
    setproctitle.setproctitle(f"jobworker: worker {index}{module} starting")
    origin.app.application_name = f"jobworker worker {index}"
    os.set_blocking(beat_fd, False)
    worker = Worker(
        origin.app,
        options,
        on_heartbeat=lambda w: _child_heartbeat(w, index, module, beat_fd, origin.parent),
    )
    return _run_worker(worker)


def _child_heartbeat(worker: Worker, index: int, module: str, beat_fd: int, parent: int) -> None:
    with contextlib.suppress(BlockingIOError, BrokenPipeError):
        os.write(beat_fd, b".")
    if os.getppid() != parent and not worker.stopping:
        logger.warning("the supervisor is gone; worker %d is stopping", index)
        worker.request_stop()
    set_worker_title(worker, index, module)


def set_worker_title(worker: Worker, index: int, module: str) -> None:
    jobs = worker.current_jobs()
    if worker.stopping:
        state = f"draining {len(jobs)} job(s)"
    elif not jobs:
        state = "idle"
    elif len(jobs) == 1:
        state = f"running {jobs[0].job_type} {jobs[0].id}"
    else:
        state = f"running {len(jobs)} jobs: {jobs[0].job_type} {jobs[0].id}, ..."
    setproctitle.setproctitle(f"jobworker: worker {index}{module} {state}")


def _run_worker(worker: Worker) -> int:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, worker.request_stop)
        await worker.run()

    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
    return 0


def _die_with_parent(signum: int) -> None:
    """Linux: the kernel sends `signum` to this process when its parent dies, even by
    SIGKILL."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)
