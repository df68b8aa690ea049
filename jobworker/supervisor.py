"""The prefork supervisor (an arbiter in gunicorn's sense).

It forks N worker processes after the job module has been imported once, and then only watches:
signal handlers merely queue the signal, and one loop reaps, restarts, recycles, kills children
whose heartbeat went stale, and drains on SIGTERM/SIGINT. The loop does no network I/O, so a
database or a Redis in trouble never delays it: a dead child's leases are released by a
short-lived helper process it forks for that (release.py says why a process). It holds no
database connection across `fork()`: it checks the schema before the first one, and closes.

Its row in the worker registry follows the same rule. It writes the row itself before the loop
starts, with the schema check (the one moment it uses the database). While it runs, its worker
processes refresh the row along with their own: each one lives only as long as the supervisor
and sees at once when it is gone (registration.py says why that makes them its witnesses), so
the row stays fresh exactly while the supervisor is alive with at least one worker. On a clean
stop, once every child is gone, a last short-lived helper deletes the row (`_left_registry`).
Killed, it leaves the row to go stale, and the janitor marks it gone.

With a health port (`--health-port`), it binds the port before it forks anything and keeps a
process that serves it (health/probe.py says why a process): started after the workers,
started again when it dies, told at a stop that the supervisor drains, and stopped last.

Longer than 400 lines on purpose: the arbiter's one loop and the state it owns (slots, backoff,
start failures, recycling, the drain) are one piece; the work that can stand alone already does
(child.py forks and runs a child, release.py ends a dead child's leases).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import select
import signal
import socket
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import psutil
import setproctitle

from jobworker.app import App, declared_queues
from jobworker.child import Origin, farewell_main, fork, health_main, releaser_main, worker_main
from jobworker.display import redact_url
from jobworker.errors import ConfigurationError
from jobworker.health.probe import listen
from jobworker.models import WorkerInfo, WorkerRole
from jobworker.registration import process_row, supervisor_id
from jobworker.release import Release
from jobworker.slots import Slots
from jobworker.worker import WorkerOptions

logger = logging.getLogger("jobworker.supervisor")

_RESTART_BACKOFF_MAX = 30.0
_FAST_EXIT = 2.0  # a child that dies sooner than this after start counts towards backoff
_EXIT_HALTED = 1  # children kept dying as they started
_EXIT_REFUSED = 2  # the memory limit is below what a fresh child takes
_FAREWELL_LIMIT = 15.0  # the helper that removes the supervisor's registry row is killed after
_HEALTH_STOP_LIMIT = 5.0  # the health process is killed this long after it was told to exit


@dataclass
class SupervisorOptions:
    concurrency: int = 1
    parallelism: int | None = None  # one set of slots for both kinds; None: slots.py's two
    async_slots: int | None = None  # None: from settings
    thread_slots: int | None = None  # None: from settings
    queues: list[str] | None = None
    max_jobs_per_child: int | None = None
    max_memory_per_child: float | None = None  # MB
    drain_timeout: float | None = None
    heartbeat_timeout: float | None = None
    max_start_failures: int = 5  # halt after this many children in a row die as they start
    title: str = ""  # the module name, shown in process titles
    health_port: int | None = None  # serve /healthz and /readyz there (0: any free port)
    health_host: str = "127.0.0.1"


@dataclass
class Child:
    index: int
    pid: int
    owner: str
    heartbeat_fd: int
    started: float = field(default_factory=time.monotonic)
    last_beat: float = field(default_factory=time.monotonic)
    ready: bool = False  # it has sent a heartbeat: its database is open and its loop runs
    retiring: bool = False
    killed: bool = False


@dataclass
class Releaser:
    """The helper process at work on the leases of children that are gone."""

    pid: int
    releases: list[Release]
    started: float = field(default_factory=time.monotonic)
    killed: bool = False


@dataclass
class Probes:
    """The process serving the health port (health/probe.py)."""

    pid: int
    control: int  # the write end of its control pipe: once closed, it exits
    started: float = field(default_factory=time.monotonic)
    closed_at: float | None = None  # when the control pipe was closed
    killed: bool = False


@dataclass
class Farewell:
    """The helper process removing the supervisor's row from the worker registry."""

    pid: int
    started: float = field(default_factory=time.monotonic)
    done: bool = False
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
        self.slots = Slots.of(
            app.settings, options.parallelism, options.async_slots, options.thread_slots
        )
        self.children: dict[int, Child] = {}
        self._to_release: list[Release] = []  # waiting for the helper
        self._releaser: Releaser | None = None
        self._row: WorkerInfo | None = None  # in the worker registry, once written
        self._farewell: Farewell | None = None
        self._probe_socket: socket.socket | None = None  # the health port, bound before forking
        self._probes: Probes | None = None
        self._probe_fast_exits = 0
        self._next_probes_at = 0.0
        self._signals: deque[int] = deque()
        self._generation = 0
        self._stopping = False
        self._stop_deadline = 0.0
        self._fast_exits = 0
        self._next_spawn_at = 0.0
        self._exit_code = 0
        self._pid = os.getpid()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

    # Entry ---------------------------------------------------------------------------------

    def run(self) -> int:
        self._refuse_memory_limit_below(_anonymous_memory_mb(os.getpid()), "the supervisor's")
        self._listen_for_probes()
        try:
            return self._run()
        finally:
            self._close_probe_socket()

    def _run(self) -> int:
        self._prepare_storage()
        self._install_signals()
        self._set_title(f"supervisor, {self.options.concurrency} children")
        logger.info(
            "supervisor %d starting %d worker process(es) x %s, queues=%s, database=%s",
            self._pid,
            self.options.concurrency,
            self.slots,
            ",".join(self.options.queues or declared_queues(self.app)),
            redact_url(self.app.settings.database_url),
        )
        for index in range(self.options.concurrency):
            self._spawn(index)
        self._keep_probes()
        last_memory_check = 0.0
        while True:
            self._wait_for_events(1.0)
            self._handle_signals()
            self._reap()
            self._release()
            if self._stopping:
                if self._stopped():
                    logger.info("supervisor %d: all workers stopped", self._pid)
                    return self._exit_code
                continue
            self._check_heartbeats()
            if time.monotonic() - last_memory_check >= 2.0:
                last_memory_check = time.monotonic()
                self._check_memory()
            self._fill_slots()
            self._keep_probes()

    def _stopped(self) -> bool:
        """While stopping: every child is gone and its leases are released. Past the stop
        deadline, whatever is left is killed."""
        if not self.children and self._releaser is None and not self._to_release:
            return self._probes_stopped() and self._left_registry()
        if time.monotonic() > self._stop_deadline:
            self._kill_all("they did not stop within the drain timeout")
            self._stop_release("the supervisor is stopping")
            self._stop_deadline = time.monotonic() + 5.0
        return False

    def _left_registry(self) -> bool:
        """The end of a stop, once every child is gone: the supervisor's row leaves the worker
        registry through a helper process (this loop does no I/O). True once it has exited; one
        still at work at the stop deadline, or after `_FAREWELL_LIMIT`, is killed, and the row
        goes stale instead."""
        if self._row is None:
            return True
        farewell = self._farewell
        if farewell is None:
            origin, row_id = self._origin(), self._row.id
            pid = fork(
                lambda: farewell_main(origin, row_id), "leaving the worker registry crashed", logger
            )
            self._farewell = Farewell(pid=pid)
            return False
        if farewell.done:
            return True
        # Within the stop deadline (a database that never answers has used it up already: one
        # second then), and never more than _FAREWELL_LIMIT.
        limit = min(_FAREWELL_LIMIT, max(self._stop_deadline - farewell.started, 1.0))
        if not farewell.killed and time.monotonic() - farewell.started > limit:
            logger.warning("removing the supervisor's worker registry row takes too long")
            farewell.killed = True
            _signal(farewell.pid, signal.SIGKILL)
        return False

    def _prepare_storage(self) -> None:
        """Create (SQLite) or check (server databases) the schema, and write this supervisor's
        row in the worker registry, then close: nothing crosses fork()."""

        async def prepare() -> None:
            storage = self.app.create_storage()
            await storage.open()
            try:
                await storage.schema.check_schema()
                row = process_row(
                    storage,
                    id=supervisor_id(),
                    role=WorkerRole.SUPERVISOR,
                    module=self.options.title,
                    queues=self.options.queues or declared_queues(self.app),
                    slots=self.options.concurrency * self.slots.total,
                )
                try:
                    await storage.workers.register(row)
                except Exception as exc:  # its workers write it at their first refresh
                    logger.warning("could not write the supervisor's registry row: %s", exc)
                self._row = row
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
                if not child.ready:
                    child.ready = True
                    self._check_fresh_memory(child)
                return

    def _handle_signals(self) -> None:
        while self._signals:
            signum = self._signals.popleft()
            if signum in (signal.SIGTERM, signal.SIGINT):
                if self._stopping:
                    self._kill_all("a second stop signal arrived")
                else:
                    self._begin_stop(f"{signal.Signals(signum).name} received")
            elif signum == signal.SIGHUP and not self._stopping:
                logger.info("SIGHUP: replacing every worker process gracefully")
                for child in self.children.values():
                    self._retire(child, "SIGHUP")

    def _halt(self, code: int, reason: str) -> None:
        """Stop as on SIGTERM, then exit with `code`: running on would not help."""
        logger.error("%s; stopping the supervisor (exit code %d)", reason, code)
        self._exit_code = code
        self._begin_stop("halting")

    def _begin_stop(self, reason: str) -> None:
        logger.info(
            "supervisor %d: %s; draining (up to %.0fs)",
            self._pid,
            reason,
            self.drain_timeout,
        )
        self._stopping = True
        self._stop_deadline = time.monotonic() + self.drain_timeout + 10.0
        self._set_title("supervisor, stopping")
        for child in self.children.values():
            _signal(child.pid, signal.SIGTERM)
        if self._probes is not None:  # /readyz answers 503 from now on
            _signal(self._probes.pid, signal.SIGTERM)

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
        options = WorkerOptions(
            worker_id=owner,
            parallelism=self.options.parallelism,
            async_slots=self.options.async_slots,
            thread_slots=self.options.thread_slots,
            queues=self.options.queues,
            max_jobs=self.options.max_jobs_per_child,
            drain_timeout=self.drain_timeout,
            module=self.options.title,
            supervisor=self._row,
        )
        beat_r, beat_w = os.pipe()
        origin = self._origin(beat_r)
        pid = fork(
            lambda: worker_main(origin, options, index, beat_w),
            "worker process crashed",
            logging.getLogger("jobworker.worker"),
        )
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
            if self._releaser is not None and pid == self._releaser.pid:
                self._releaser = None
                continue
            if self._farewell is not None and pid == self._farewell.pid:
                self._farewell.done = True
                continue
            probes = self._probes
            if probes is not None and pid == probes.pid:
                self._probes = None
                self._on_probes_exit(probes, status)
                continue
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
            how = _how_it_ended(code)
            logger.error("worker %d (pid %d) died (%s)", child.index, child.pid, how)
            lost = not self._stopping
            reason = f"worker process died ({how})" if lost else "released at shutdown"
            counted_by = None if self._row is None else self._row.id  # its figures count them
            self._to_release.append(
                Release(owner=child.owner, lost=lost, reason=reason, counted_by=counted_by)
            )
            if self._stopping:
                return
            if lifetime < _FAST_EXIT or not child.ready:
                self._fast_exits += 1
                if self._fast_exits >= self.options.max_start_failures:
                    self._halt(
                        _EXIT_HALTED,
                        f"worker processes keep dying as they start: {self._fast_exits} in a "
                        f"row (the last, worker {child.index}, with {how})",
                    )
                    return
                backoff = _restart_pause(self._fast_exits)
                self._next_spawn_at = time.monotonic() + backoff
                logger.warning(
                    "worker %d died as it started (after %.1fs); next start in %.1fs",
                    child.index,
                    lifetime,
                    backoff,
                )
            else:
                self._fast_exits = 0

    # The health port -------------------------------------------------------------------------

    def _listen_for_probes(self) -> None:
        if self.options.health_port is None:
            return
        self._probe_socket = listen(self.options.health_host, self.options.health_port)
        host, port = self._probe_socket.getsockname()[:2]
        logger.info("health probes on http://%s:%d (/healthz, /readyz)", _url_host(host), port)

    def _keep_probes(self) -> None:
        """Start the health process, unless it runs, or waits to be started again after it
        died (a process that dies as it starts waits longer each time, as children do)."""
        sock = self._probe_socket
        if sock is None or self._probes is not None or self._row is None:
            return
        if time.monotonic() < self._next_probes_at:
            return
        control_r, control_w = os.pipe()
        origin = self._origin(control_w, serving_probes=True)
        row_id, workers = self._row.id, self.options.concurrency
        pid = fork(
            lambda: health_main(origin, sock, control_r, row_id, workers),
            "the health process crashed",
            logger,
        )
        os.close(control_r)
        self._probes = Probes(pid=pid, control=control_w)

    def _on_probes_exit(self, probes: Probes, status: int) -> None:
        """The health process has exited: started again at once, unless it died as it started
        (then after a pause that doubles each time, as for worker processes)."""
        if probes.closed_at is None:
            os.close(probes.control)
        if self._stopping:
            return
        how = _how_it_ended(os.waitstatus_to_exitcode(status))
        lived = time.monotonic() - probes.started
        self._probe_fast_exits = self._probe_fast_exits + 1 if lived < _FAST_EXIT else 0
        backoff = _restart_pause(self._probe_fast_exits) if self._probe_fast_exits else 0.0
        self._next_probes_at = time.monotonic() + backoff
        logger.error(
            "the health process (pid %d) died (%s); starting another in %.1fs",
            probes.pid,
            how,
            backoff,
        )

    def _probes_stopped(self) -> bool:
        """The end of a stop, once every child is gone: the health process is told to exit
        (its control pipe closed), and killed if it has not within `_HEALTH_STOP_LIMIT`; then
        the port is closed. True once it is."""
        probes = self._probes
        if probes is None:
            self._close_probe_socket()
            return True
        now = time.monotonic()
        if probes.closed_at is None:
            os.close(probes.control)
            probes.closed_at = now
        elif not probes.killed and now - probes.closed_at > _HEALTH_STOP_LIMIT:
            logger.warning("the health process did not exit; killing it")
            probes.killed = True
            _signal(probes.pid, signal.SIGKILL)
        return False

    def _close_probe_socket(self) -> None:
        sock, self._probe_socket = self._probe_socket, None
        if sock is not None:
            sock.close()

    # Releasing the leases of children that are gone ------------------------------------------

    def _release(self) -> None:
        """Hand the owners waiting for a release to a helper process, unless one is at work (it
        is killed once it has worked for a lease duration: the leases have expired by then)."""
        helper = self._releaser
        if helper is not None:
            limit = self.app.settings.lease_duration
            if time.monotonic() - helper.started > limit:
                self._stop_release(f"still at work after the lease duration, {limit:.0f}s")
            return
        if not self._to_release:
            return
        releases, self._to_release = self._to_release, []
        origin = self._origin()
        pid = fork(lambda: releaser_main(origin, releases), "releasing leases crashed", logger)
        self._releaser = Releaser(pid=pid, releases=releases)

    def _stop_release(self, reason: str) -> None:
        helper = self._releaser
        if helper is None or helper.killed:
            return
        logger.error(
            "stopping the release of the leases of %s (%s); they will expire instead",
            ", ".join(release.owner for release in helper.releases),
            reason,
        )
        helper.killed = True
        _signal(helper.pid, signal.SIGKILL)

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

    def _refuse_memory_limit_below(self, baseline_mb: float, whose: str) -> None:
        limit = self.options.max_memory_per_child
        if limit and baseline_mb >= limit:
            raise ConfigurationError(
                f"--max-memory-per-child {limit:g} MB is below {whose} memory "
                f"({baseline_mb:.0f} MB), which every worker process starts with: each would "
                "be replaced as soon as it started; raise the limit"
            )

    def _check_fresh_memory(self, child: Child) -> None:
        """A child that has just reported in for the first time has run no job yet: above
        the memory limit already, every child would be recycled as soon as it started."""
        limit = self.options.max_memory_per_child
        if not limit or self._stopping:
            return
        try:
            rss_mb = psutil.Process(child.pid).memory_info().rss / (1024 * 1024)
        except psutil.Error:
            return
        if rss_mb > limit:
            self._halt(
                _EXIT_REFUSED,
                f"--max-memory-per-child {limit:g} MB is below a fresh worker process's memory "
                f"({rss_mb:.0f} MB, worker {child.index} as it started): every worker would be "
                "replaced as soon as it started; raise the limit",
            )

    def _check_memory(self) -> None:
        limit = self.options.max_memory_per_child
        if not limit:
            return
        for child in list(self.children.values()):
            # A child that has not reported in yet is judged when it does (a fresh worker over
            # the limit refuses the limit): recycling it first would hide that.
            if child.retiring or not child.ready:
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

    def _origin(self, *descriptors: int, serving_probes: bool = False) -> Origin:
        """What a process forked now takes from the supervisor (with `descriptors` of its own
        to close). Only the health process (`serving_probes`) keeps the health port's socket;
        none keeps the health process's control pipe, or it would never see its end."""
        heartbeats = [child.heartbeat_fd for child in self.children.values()]
        probes = []
        if self._probe_socket is not None and not serving_probes:
            probes.append(self._probe_socket.fileno())
        if self._probes is not None and self._probes.closed_at is None:
            probes.append(self._probes.control)
        return Origin(
            app=self.app,
            parent=self._pid,
            inherited=(self._wake_r, self._wake_w, *heartbeats, *probes, *descriptors),
            module=self.options.title,
        )


def _how_it_ended(code: int) -> str:
    """A child's exit code (`os.waitstatus_to_exitcode`) in words."""
    return f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"


def _restart_pause(fast_exits: int) -> float:
    """Seconds before a child that died as it started, `fast_exits` times in a row, is started
    again: doubling, up to a limit."""
    return min(0.5 * 2.0**fast_exits, _RESTART_BACKOFF_MAX)


def _anonymous_memory_mb(pid: int) -> float:
    """The process's resident memory that is not backed by a file: its heap, which a child
    forked from it starts with resident (0 where the kernel does not tell)."""
    try:
        info = psutil.Process(pid).memory_info()
    except psutil.Error:
        return 0.0
    shared = getattr(info, "shared", None)  # Linux: file-backed and shared pages
    return 0.0 if shared is None else (info.rss - shared) / (1024 * 1024)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
