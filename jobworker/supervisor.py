"""The prefork supervisor (an arbiter in gunicorn's sense).

It forks N worker processes after the job module has been imported once, and then only watches:
signal handlers merely queue the signal, and one loop reaps, restarts, recycles, kills children
whose heartbeat went stale, and drains on SIGTERM/SIGINT. It holds no database connection across
`fork()`: when it must release a dead child's leases it opens a connection, uses it and closes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import logging
import os
import select
import signal
import sys
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import psutil
import setproctitle

from jobworker.app import App
from jobworker.events.bus import live_floors
from jobworker.worker import Worker, WorkerOptions, declared_queues

logger = logging.getLogger("jobworker.supervisor")

_PR_SET_PDEATHSIG = 1
_RESTART_BACKOFF_MAX = 30.0
_FAST_EXIT = 2.0  # a child that dies sooner than this after start counts towards backoff


@dataclass
class SupervisorOptions:
    concurrency: int = 1
    parallelism: int = 10
    queues: list[str] | None = None
    max_jobs_per_child: int | None = None
    max_memory_per_child: float | None = None  # MB
    drain_timeout: float | None = None
    heartbeat_timeout: float | None = None
    title: str = ""  # the module name, shown in process titles


@dataclass
class Child:
    index: int
    pid: int
    owner: str
    heartbeat_fd: int
    started: float = field(default_factory=time.monotonic)
    last_beat: float = field(default_factory=time.monotonic)
    retiring: bool = False
    killed: bool = False


class Supervisor:
    def __init__(self, app: App, options: SupervisorOptions) -> None:
        self.app = app
        self.options = options
        self.drain_timeout = (
            options.drain_timeout
            if options.drain_timeout is not None
            else app.settings.drain_timeout
        )
        self.heartbeat_timeout = options.heartbeat_timeout or app.settings.heartbeat_timeout
        self.children: dict[int, Child] = {}
        self._signals: deque[int] = deque()
        self._generation = 0
        self._stopping = False
        self._stop_deadline = 0.0
        self._fast_exits = 0
        self._next_spawn_at = 0.0
        self._pid = os.getpid()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

    # Entry ---------------------------------------------------------------------------------

    def run(self) -> int:
        self._prepare_storage()
        self._install_signals()
        self._set_title(f"supervisor, {self.options.concurrency} children")
        logger.info(
            "supervisor %d starting %d worker process(es) x %d slot(s), queues=%s",
            self._pid,
            self.options.concurrency,
            self.options.parallelism,
            ",".join(self.options.queues or declared_queues(self.app)),
        )
        for index in range(self.options.concurrency):
            self._spawn(index)
        last_memory_check = 0.0
        while True:
            self._wait_for_events(1.0)
            self._handle_signals()
            self._reap()
            if self._stopping:
                if not self.children:
                    logger.info("supervisor %d: all workers stopped", self._pid)
                    return 0
                if time.monotonic() > self._stop_deadline:
                    self._kill_all("they did not stop within the drain timeout")
                    self._stop_deadline = time.monotonic() + 5.0
                continue
            self._check_heartbeats()
            if time.monotonic() - last_memory_check >= 2.0:
                last_memory_check = time.monotonic()
                self._check_memory()
            self._fill_slots()

    def _prepare_storage(self) -> None:
        """Create (SQLite) or check (server databases) the schema, then close: nothing crosses
        fork()."""

        async def prepare() -> None:
            storage = self.app.create_storage()
            await storage.open()
            try:
                await storage.schema.check_schema()
            finally:
                await storage.close()

        asyncio.run(prepare())

    # Signals -------------------------------------------------------------------------------

    def _install_signals(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP):
            signal.signal(signum, self._queue_signal)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)

    def _queue_signal(self, signum: int, _frame: Any) -> None:
        self._signals.append(signum)

    def _wait_for_events(self, timeout: float) -> None:
        fds = [self._wake_r, *(child.heartbeat_fd for child in self.children.values())]
        try:
            readable, _, _ = select.select(fds, [], [], timeout)
        except InterruptedError:
            return
        now = time.monotonic()
        for fd in readable:
            try:
                while os.read(fd, 4096):
                    if fd != self._wake_r:
                        self._beat(fd, now)
            except BlockingIOError:
                pass
            except OSError as exc:
                if exc.errno != errno.EBADF:
                    raise

    def _beat(self, fd: int, now: float) -> None:
        for child in self.children.values():
            if child.heartbeat_fd == fd:
                child.last_beat = now
                return

    def _handle_signals(self) -> None:
        while self._signals:
            signum = self._signals.popleft()
            if signum in (signal.SIGTERM, signal.SIGINT):
                if self._stopping:
                    self._kill_all("a second stop signal arrived")
                else:
                    self._begin_stop(signal.Signals(signum).name)
            elif signum == signal.SIGHUP and not self._stopping:
                logger.info("SIGHUP: replacing every worker process gracefully")
                for child in self.children.values():
                    self._retire(child, "SIGHUP")

    def _begin_stop(self, reason: str) -> None:
        logger.info(
            "supervisor %d: %s received; draining (up to %.0fs)",
            self._pid,
            reason,
            self.drain_timeout,
        )
        self._stopping = True
        self._stop_deadline = time.monotonic() + self.drain_timeout + 10.0
        self._set_title("supervisor, stopping")
        for child in self.children.values():
            _signal(child.pid, signal.SIGTERM)

    def _kill_all(self, reason: str) -> None:
        if self.children:
            logger.warning("killing %d worker process(es): %s", len(self.children), reason)
        for child in self.children.values():
            child.killed = True
            _signal(child.pid, signal.SIGKILL)

    # Children ------------------------------------------------------------------------------

    def _fill_slots(self) -> None:
        active = {child.index for child in self.children.values() if not child.retiring}
        missing = [i for i in range(self.options.concurrency) if i not in active]
        if not missing or time.monotonic() < self._next_spawn_at:
            return
        for index in missing:
            self._spawn(index)

    def _spawn(self, index: int) -> None:
        self._generation += 1
        owner = (
            f"{os.uname().nodename}:{self._pid}:{index}.{self._generation}:{uuid.uuid4().hex[:6]}"
        )
        beat_r, beat_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, measured by the process tests
            os.close(beat_r)
            code = 1
            try:
                code = _child_main(self, index, owner, beat_w)
            except BaseException:
                logging.getLogger("jobworker.worker").exception("worker process crashed")
            finally:
                logging.shutdown()
                os._exit(code)
        os.close(beat_w)
        os.set_blocking(beat_r, False)
        self.children[pid] = Child(index=index, pid=pid, owner=owner, heartbeat_fd=beat_r)
        logger.info("started worker %d (pid %d, owner %s)", index, pid, owner)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is None:
                continue
            os.close(child.heartbeat_fd)
            self._on_exit(child, status)

    def _on_exit(self, child: Child, status: int) -> None:
        code = os.waitstatus_to_exitcode(status)
        lifetime = time.monotonic() - child.started
        clean = code == 0 and not child.killed
        if clean:
            logger.info("worker %d (pid %d) exited", child.index, child.pid)
            self._fast_exits = 0
        else:
            how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
            logger.error("worker %d (pid %d) died (%s)", child.index, child.pid, how)
            if self._stopping:
                self._release(child.owner, lost=False, reason="released at shutdown")
            else:
                self._release(child.owner, lost=True, reason=f"worker process died ({how})")
            if lifetime < _FAST_EXIT:
                self._fast_exits += 1
                backoff = min(0.5 * 2**self._fast_exits, _RESTART_BACKOFF_MAX)
                self._next_spawn_at = time.monotonic() + backoff
                logger.warning(
                    "worker %d died within %.1fs of starting; next start in %.1fs",
                    child.index,
                    lifetime,
                    backoff,
                )
            else:
                self._fast_exits = 0

    def _release(self, owner: str, *, lost: bool, reason: str) -> None:
        async def release() -> int:
            storage = self.app.create_storage()
            await storage.open()
            try:
                floors = {}
                if lost:  # its events on Redis may run ahead of what the database knows
                    leased = await storage.maintenance.leased_job_ids(owner, limit=100_000)
                    floors = await live_floors(self.app.settings, leased)
                return await storage.jobs.release_owner(
                    owner, lost=lost, reason=reason, seq_floors=floors
                )
            finally:
                await storage.close()

        try:
            count = asyncio.run(release())
        except Exception:
            logger.exception("releasing the leases of %s failed; they will expire instead", owner)
            return
        if count:
            logger.info("released %d job(s) held by %s", count, owner)

    def _retire(self, child: Child, reason: str) -> None:
        if child.retiring:
            return
        logger.info("recycling worker %d (pid %d): %s", child.index, child.pid, reason)
        child.retiring = True
        _signal(child.pid, signal.SIGTERM)

    def _check_heartbeats(self) -> None:
        now = time.monotonic()
        for child in self.children.values():
            if not child.killed and now - child.last_beat > self.heartbeat_timeout:
                logger.error(
                    "worker %d (pid %d) sent no heartbeat for %.0fs; killing it",
                    child.index,
                    child.pid,
                    now - child.last_beat,
                )
                child.killed = True
                _signal(child.pid, signal.SIGKILL)

    def _check_memory(self) -> None:
        limit = self.options.max_memory_per_child
        if not limit:
            return
        for child in list(self.children.values()):
            if child.retiring:
                continue
            try:
                rss_mb = psutil.Process(child.pid).memory_info().rss / (1024 * 1024)
            except psutil.Error:
                continue
            if rss_mb > limit:
                self._retire(child, f"memory {rss_mb:.0f} MB > {limit:.0f} MB")

    def _set_title(self, state: str) -> None:
        module = f" [{self.options.title}]" if self.options.title else ""
        setproctitle.setproctitle(f"jobworker: {state}{module}")


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _die_with_parent() -> None:
    """Linux: the kernel sends SIGTERM to this child when the supervisor dies, even by SIGKILL."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _child_main(supervisor: Supervisor, index: int, owner: str, beat_fd: int) -> int:
    """Body of a worker process; returns its exit code."""
    signal.set_wakeup_fd(-1)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    os.close(supervisor._wake_r)
    os.close(supervisor._wake_w)
    for other in supervisor.children.values():
        os.close(other.heartbeat_fd)
    parent = supervisor._pid
    _die_with_parent()
    if os.getppid() != parent:  # the supervisor died before prctl took effect
        return 0
    options = supervisor.options
    module = f" [{options.title}]" if options.title else ""
    setproctitle.setproctitle(f"jobworker: worker {index}{module} starting")
    os.set_blocking(beat_fd, False)
    worker = Worker(
        supervisor.app,
        WorkerOptions(
            worker_id=owner,
            parallelism=options.parallelism,
            queues=options.queues,
            max_jobs=options.max_jobs_per_child,
            drain_timeout=supervisor.drain_timeout,
        ),
        on_heartbeat=lambda w: _child_heartbeat(w, index, module, beat_fd, parent),
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
