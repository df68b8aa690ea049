"""A supervisor's health port (`jobworker run --health-port`): `/healthz` and `/readyz` for probes
without the web tail, served by a process the supervisor forks, restarts when it dies and stops
last, once its worker processes are gone.

Why a process, not a thread in the supervisor: the supervisor's loop does no I/O and holds no
database connection, since it forks: a thread that queried the database would hold connections
and locks (the driver's, logging's) at the moment of a `fork()`, and a child could start with a
lock held forever; Python warns about forking a process that runs threads for that reason. A
process of its own also keeps a slow or hung database away from the supervisor's loop, and is
restarted like any other child. It is forked, as the helpers of child.py are, after the job
module was imported, so it costs no import of its own.

The supervisor binds the listening socket before it forks anything, so that a port in use is an
error at start (exit code 2), and the port stays bound across restarts of the health process;
every other child closes its copy at once (`Origin.inherited`). The health process:

- serves HTTP with the standard library (`http.server`, a thread per request), and runs the
  checks, which are coroutines, on one event loop in a thread of its own;
- on SIGTERM or SIGINT (its supervisor is stopping, or the whole group was told to stop), goes
  on answering, `/readyz` with 503;
- exits when the supervisor closes the control pipe (end of file: once its workers are gone, or
  when the supervisor dies), and dies with it anyway (`PR_SET_PDEATHSIG`).

`ROUTES` maps each path to a coroutine that takes the `ProbeState` and returns an `Answer`:
`/healthz`, `/readyz` and `/metrics` (this supervisor's figures, metrics/exposition.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from jobworker import codec
from jobworker.config import Settings
from jobworker.errors import ConfigurationError, MissingExtraError
from jobworker.health.answers import PROBE_TIMEOUT, Answer, alive, ready
from jobworker.health.checks import Check, Outcome, Status, database, live_workers, timed
from jobworker.metrics.exposition import CONTENT_TYPE, render
from jobworker.portal import Portal
from jobworker.storage import Storage

__all__ = ["ROUTES", "ProbeState", "Route", "healthz", "listen", "metrics", "readyz", "serve"]

logger = logging.getLogger("jobworker.health")

_REQUEST_TIMEOUT = 10.0  # a client that sends no complete request within this is dropped


@dataclass
class ProbeState:
    """What the probes know: the supervisor (its pid and its row in the worker registry), how
    many worker processes it runs, and how to reach the database."""

    supervisor_pid: int
    supervisor_row: str
    workers: int
    settings: Settings
    create_storage: Callable[[], Storage]
    timeout: float = PROBE_TIMEOUT
    stopping: bool = False  # SIGTERM or SIGINT came: the supervisor drains
    _storage: Storage | None = field(default=None, repr=False)
    _lock: asyncio.Lock | None = field(default=None, repr=False)

    def supervisor_alive(self) -> bool:
        return os.getppid() == self.supervisor_pid

    async def storage(self) -> Storage:
        """The probes' storage, opened on first use and kept open; after a failed check it is
        closed (`forget_storage`) and the next probe opens a new one."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._storage is None:
                storage = self.create_storage()
                try:
                    await storage.open()
                except BaseException:
                    await storage.close()
                    raise
                self._storage = storage
            return self._storage

    async def forget_storage(self) -> None:
        storage, self._storage = self._storage, None
        if storage is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(storage.close(), self.timeout)


Route = Callable[[ProbeState], Coroutine[Any, Any, Answer]]
"""A path's handler: it runs on the health process's event loop."""


async def healthz(state: ProbeState) -> Answer:
    """Liveness: this process answers and its supervisor is alive."""
    if not state.supervisor_alive():
        body = {"status": Status.FAIL, "detail": f"supervisor {state.supervisor_pid} is gone"}
        return Answer(503, codec.encode(body))
    return alive(pid=os.getpid(), supervisor=state.supervisor_pid, stopping=state.stopping)


async def readyz(state: ProbeState) -> Answer:
    """Readiness: the supervisor runs and is not stopping, the database answers, and at least
    one of this supervisor's worker processes has a fresh heartbeat in the registry."""
    checks = [_supervisor(state)]

    async def reachable() -> Outcome:
        return await database(await state.storage())

    checks.append(await timed("database", reachable, state.timeout))
    if checks[-1].status is Status.FAIL:
        await state.forget_storage()
    else:

        async def alive_workers() -> Outcome:
            status, detail = await live_workers(
                await state.storage(), state.settings, state.supervisor_row
            )
            return status, f"{detail}; it runs {state.workers}"

        checks.append(await timed("workers", alive_workers, state.timeout))
    return ready(checks, supervisor=state.supervisor_pid)


def _supervisor(state: ProbeState) -> Check:
    if not state.supervisor_alive():
        status, detail = Status.FAIL, f"supervisor {state.supervisor_pid} is gone"
    elif state.stopping:
        status, detail = Status.FAIL, "stopping: the supervisor drains its worker processes"
    else:
        status, detail = Status.OK, f"supervisor {state.supervisor_pid} runs"
    return Check(name="supervisor", status=status, detail=detail, seconds=0.0)


async def metrics(state: ProbeState) -> Answer:
    """The Prometheus exposition of this supervisor's processes (its own row and its worker
    processes' figures) and the database-wide queue gauges; 501 without prometheus-client."""
    try:
        body = await render(await state.storage(), parent=state.supervisor_row)
    except MissingExtraError as exc:
        return Answer(501, f"{exc}\n".encode(), "text/plain; charset=utf-8")
    except Exception as exc:
        await state.forget_storage()
        return Answer(503, f"{type(exc).__name__}: {exc}\n".encode(), "text/plain; charset=utf-8")
    return Answer(200, body, CONTENT_TYPE)


# The paths served, and their handlers.
ROUTES: dict[str, Route] = {
    "/healthz": healthz,
    "/readyz": readyz,
    "/metrics": metrics,
}


def listen(host: str, port: int) -> socket.socket:
    """The health port's listening socket, bound in the supervisor before it forks; a port that
    cannot be bound is a ConfigurationError that says which and why."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=64)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot listen on {host}:{port} for --health-port: {exc.strerror or exc}"
        ) from None


def serve(sock: socket.socket, state: ProbeState, control_fd: int) -> int:
    """Answer probes on `sock` until `control_fd` reaches its end; returns the exit code."""
    portal = Portal("jobworker-health")
    server = _Server(sock, state, portal)

    def stopping(signum: int, frame: Any) -> None:
        state.stopping = True

    signal.signal(signal.SIGTERM, stopping)
    signal.signal(signal.SIGINT, stopping)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    watcher = threading.Thread(
        target=_until_closed, args=(control_fd, server), name="control", daemon=True
    )
    watcher.start()
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        with contextlib.suppress(Exception):
            portal.call(state.forget_storage(), timeout=state.timeout * 2)
        server.server_close()
    return 0


def _until_closed(control_fd: int, server: ThreadingHTTPServer) -> None:
    """Block until the supervisor closes its end of the control pipe, then stop serving."""
    with contextlib.suppress(OSError):
        while os.read(control_fd, 64):
            pass
    server.shutdown()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, sock: socket.socket, state: ProbeState, portal: Portal) -> None:
        self.address_family = sock.family
        super().__init__(sock.getsockname()[:2], _Handler, bind_and_activate=False)
        self.socket.close()  # the one the constructor made: the supervisor's is served
        self.socket = sock
        self.server_name, self.server_port = str(sock.getsockname()[0]), sock.getsockname()[1]
        self.state = state
        self.portal = portal


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = _REQUEST_TIMEOUT
    server_version = "jobworker-health"
    sys_version = ""  # no Python version in the Server header

    def do_GET(self) -> None:
        route = ROUTES.get(urlsplit(self.path).path)
        if route is None:
            answer = Answer(404, codec.encode({"status": "fail", "detail": "not found"}))
        else:
            state = self.server.state
            try:
                # Each check has its own timeout; this bounds the handler as a whole.
                answer = self.server.portal.call(route(state), timeout=state.timeout * 4)
            except Exception as exc:
                logger.exception("the health probe %s failed", self.path)
                body = {"status": "fail", "detail": f"{type(exc).__name__}: {exc}"}
                answer = Answer(500, codec.encode(body))
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(answer.body)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)
