"""Serving the web tail with uvicorn (uvloop, httptools): what `jobworker web` runs.

One process serves the app built in the parent. With `workers > 1` uvicorn starts that many
processes, each building its own app from an import string: `app_from_environment` reads what
to build from the `JOBWORKER_WEB_*` variables `serve` sets (children inherit them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount

from jobworker.app import App, find_app
from jobworker.definitions import import_object
from jobworker.display import redact_url
from jobworker.errors import ConfigurationError
from jobworker.logs import dict_config
from jobworker.web.admin import admin_api
from jobworker.web.admin.stats_stream import StatsFeed, stats_stream_endpoint
from jobworker.web.admin.stream import stream_endpoint
from jobworker.web.app import DEFAULT_PREFIX, check_prefix, create_app
from jobworker.web.config import WebConfig
from jobworker.web.dashboard import dashboard_routes
from jobworker.web.fanout import StreamHub
from jobworker.web.metrics import metrics_routes
from jobworker.web.security import SecurityHeaders

__all__ = [
    "ServeOptions",
    "WebTarget",
    "app_from_environment",
    "auth_line",
    "on_stop_signals",
    "serve",
    "startup_lines",
    "tail_middleware",
    "tail_routes",
]

logger = logging.getLogger("jobworker.web")

# What the worker processes of `--workers N` build, set by `serve` for them.
ENV_MODULE = "JOBWORKER_WEB_MODULE"
ENV_ROUTES = "JOBWORKER_WEB_ROUTES"
ENV_PREFIX = "JOBWORKER_WEB_PREFIX"
ENV_DATABASE_URL = "JOBWORKER_WEB_DATABASE_URL"
ENV_SESSION_SECRET = "JOBWORKER_WEB_SESSION_SECRET"

FACTORY = f"{__name__}:app_from_environment"
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclass(frozen=True)
class WebTarget:
    """What to serve: the jobs module (its App), extra routes, the prefix, the database."""

    module: str
    routes: str | None = None  # MODULE:ATTR of routes, or of a callable App -> routes
    prefix: str = DEFAULT_PREFIX
    database_url: str | None = None

    def load(self, config: WebConfig | None = None) -> tuple[App, Starlette]:
        """Import the module and build the app (the admin API's set-up from `config`, else from
        the `JOBWORKER_WEB_*` variables); import failures raise AppImportError, bad values
        ConfigurationError."""
        check_prefix(self.prefix)
        config = WebConfig.load() if config is None else config
        app = find_app(import_object(self.module), database_url=self.database_url)
        app.application_name = "jobworker web"
        routes = _load_routes(self.routes, app) if self.routes else []
        web = create_app(
            app,
            prefix=self.prefix,
            routes=[*tail_routes(app, self.prefix, config), *routes],
            root_routes=metrics_routes(app, config),
            middleware=tail_middleware(),
        )
        _end_streams_when_stopping(
            web, StreamHub.for_client(app.client), StatsFeed.for_client(app.client)
        )
        return app, web

    def to_environment(self) -> dict[str, str]:
        env = {ENV_MODULE: self.module, ENV_PREFIX: self.prefix}
        if self.routes:
            env[ENV_ROUTES] = self.routes
        if self.database_url:
            env[ENV_DATABASE_URL] = self.database_url
        return env

    @classmethod
    def from_environment(cls) -> WebTarget:
        module = os.environ.get(ENV_MODULE)
        if not module:
            raise ConfigurationError(f"{ENV_MODULE} is not set: start it with jobworker web")
        return cls(
            module=module,
            routes=os.environ.get(ENV_ROUTES) or None,
            prefix=os.environ.get(ENV_PREFIX, DEFAULT_PREFIX),
            database_url=os.environ.get(ENV_DATABASE_URL) or None,
        )


def tail_routes(app: App, prefix: str, config: WebConfig) -> list[BaseRoute]:
    """What `jobworker web` serves under the prefix besides `--routes`: the admin API at `/api`
    (with the job's live stream and the live overview for the dashboard) and the dashboard,
    unless no password is configured (then neither: the admin API is off)."""
    hub = StreamHub.for_client(app.client)
    streams = [stream_endpoint(hub), stats_stream_endpoint(StatsFeed.for_client(app.client))]
    api = admin_api(app.client, config, prefix=prefix, extra_endpoints=streams)
    return [] if api is None else [Mount("/api", app=api), *dashboard_routes(prefix)]


def tail_middleware() -> list[Middleware]:
    """What wraps everything `jobworker web` answers: the security headers."""
    return [Middleware(SecurityHeaders)]


def _load_routes(path: str, app: App) -> list[BaseRoute]:
    value = import_object(path)
    if callable(value):
        value = value(app)
    if not isinstance(value, Sequence) or not all(isinstance(r, BaseRoute) for r in value):
        raise ConfigurationError(
            f"--routes {path!r} must name a list of Starlette routes, or a function that takes "
            f"the App and returns one (got {type(value).__name__})"
        )
    return list(value)


def _end_streams_when_stopping(web: Starlette, hub: StreamHub, feed: StatsFeed) -> None:
    """On SIGTERM or SIGINT, end the live streams at once, each job's with a `reconnect` event
    (the browser resumes elsewhere from its last event id), and the live overview's, so that the
    server stops as soon as its other responses are done, not after the graceful timeout with
    the streams cut.

    uvicorn tells an app nothing when it starts stopping (the lifespan's shutdown comes after the
    connections are closed), so while the app runs its signal handlers are wrapped: each still
    calls uvicorn's."""
    running = web.router.lifespan_context

    async def stopping() -> None:
        await asyncio.gather(hub.aclose(), feed.aclose())

    @contextlib.asynccontextmanager
    async def lifespan(starlette: Starlette) -> AsyncIterator[Any]:
        async with running(starlette) as state:
            with on_stop_signals(stopping):
                yield state

    web.router.lifespan_context = lifespan


@contextlib.contextmanager
def on_stop_signals(stopping: Callable[[], Coroutine[Any, Any, None]]) -> Iterator[None]:
    """Start `stopping()` on the running loop when SIGTERM or SIGINT comes, then call the
    handler that was there; put the handlers back afterwards. Signal handlers belong to the
    main thread: elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    started: set[asyncio.Task[None]] = set()

    def start() -> None:
        task = loop.create_task(stopping())
        started.add(task)
        task.add_done_callback(started.discard)

    def wrapped(previous: Any) -> Callable[[int, FrameType | None], None]:
        def handler(signum: int, frame: FrameType | None) -> None:
            loop.call_soon_threadsafe(start)
            if callable(previous):
                previous(signum, frame)

        return handler

    previous = {signum: signal.getsignal(signum) for signum in _STOP_SIGNALS}
    for signum, handler in previous.items():
        signal.signal(signum, wrapped(handler))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def app_from_environment() -> Starlette:
    """The uvicorn factory of each worker process of `jobworker web --workers N`."""
    return WebTarget.from_environment().load()[1]


@dataclass(frozen=True)
class ServeOptions:
    """How to serve: address, processes, proxy trust, shutdown, logging."""

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    proxy_headers: bool = False
    forwarded_allow_ips: str = "127.0.0.1"
    graceful_timeout: int = 5
    access_log: bool = True
    log_level: str = "info"
    log_format: str = "text"  # or "json" (jobworker.logs)


def auth_line(config: WebConfig, prefix: str) -> str:
    """Whether the admin API and its login are on, for the start-up log."""
    if not config.enabled:
        return "admin API: off (no password configured: set JOBWORKER_WEB_ADMIN_PASSWORD_HASH)"
    users = [
        f"{name} ({role})"
        for name, role, hashed in (
            (config.admin_username, "admin", config.admin_password_hash),
            (config.readonly_username, "read-only", config.readonly_password_hash),
        )
        if hashed is not None
    ]
    return f"admin API: on at {prefix}/api, logins: {', '.join(users)}"


def startup_lines(
    app: App, target: WebTarget, options: ServeOptions, config: WebConfig
) -> list[str]:
    """The lines `serve` logs as it starts: where it listens, the storage, the bus, auth."""
    host = f"[{options.host}]" if ":" in options.host else options.host
    settings = app.settings
    storage = redact_url(settings.database_url)
    if app.dialect != "sqlite":
        storage += f" (schema {settings.database_schema})"
    if settings.redis_url:
        bus = f"redis {redact_url(settings.redis_url)} (prefix {settings.redis_prefix})"
    else:
        bus = "the database (no redis_url set)"
    processes = "1 process" if options.workers == 1 else f"{options.workers} worker processes"
    return [
        f"listening on http://{host}:{options.port}{target.prefix} ({processes})",
        f"storage: {storage}",
        f"event bus: {bus}",
        auth_line(config, target.prefix),
    ]


def serve(target: WebTarget, options: ServeOptions) -> None:
    """Load the target, log where it serves, and serve until SIGTERM or SIGINT. Load errors
    raise before anything listens."""
    config = WebConfig.load()
    if options.workers > 1 and config.enabled and config.session_secret is None:
        # Each process would sign sessions with a secret of its own, and a login would hold
        # only on the process that answered it: the processes share one for this run instead.
        os.environ[ENV_SESSION_SECRET] = secrets.token_urlsafe(48)
        config = WebConfig.load()
    app, web = target.load(config)
    for line in startup_lines(app, target, options, config):
        logger.info("%s", line)
    served: Any = web
    if options.workers > 1:
        os.environ.update(target.to_environment())
        served = FACTORY
    with _stop_signals_end_cleanly():
        _run_uvicorn(served, options)


@contextlib.contextmanager
def _stop_signals_end_cleanly() -> Iterator[None]:
    """Once uvicorn has shut down after SIGTERM or SIGINT, it raises that signal again, so the
    process would die of it (exit code 143 or 130). Stopping on a signal is the normal way to end
    a server: this makes it exit with 0 instead (uvicorn restores this handler and calls it)."""
    previous = {signum: signal.signal(signum, _ignore) for signum in _STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _ignore(signum: int, frame: object) -> None:
    pass


def _run_uvicorn(served: Any, options: ServeOptions) -> None:
    uvicorn.run(
        served,
        factory=options.workers > 1,
        host=options.host,
        port=options.port,
        workers=options.workers,
        loop="uvloop",
        http="httptools",
        ws="none",
        lifespan="on",
        proxy_headers=options.proxy_headers,
        forwarded_allow_ips=options.forwarded_allow_ips,
        timeout_graceful_shutdown=options.graceful_timeout,
        access_log=options.access_log,
        server_header=False,
        log_config=log_config(options.log_level, options.log_format),
        log_level=options.log_level.lower(),
    )


def log_config(level: str, log_format: str) -> dict[str, Any]:
    """Logging for uvicorn and every worker process (uvicorn applies it in each): the command's
    format (text lines escaped, or JSON), on stderr."""
    return dict_config(level, log_format)
