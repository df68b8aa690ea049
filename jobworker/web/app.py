"""The app factory: `create_app` builds the Starlette app that serves the web tail under one path
prefix, and closes the client's stream hub and the job App's storage and stream readers when it
shuts down.

It serves what it is given (`routes`) under `prefix`; `jobworker web` and a user's own app both
build it here. In a host app (Starlette or FastAPI) it is mounted at the root, and its lifespan
entered from the host's, since a host does not run the lifespan of what it mounts:

    web = create_app(app, prefix="/jobs-ui", routes=[...])
    host = FastAPI(lifespan=lambda host: web.router.lifespan_context(web))
    host.mount("/", web)  # after the host's own routes
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount

from jobworker.app import App
from jobworker.errors import ConfigurationError
from jobworker.web.fanout import StreamHub
from jobworker.web.probes import probe_routes

__all__ = ["DEFAULT_PREFIX", "Closer", "check_prefix", "close_all", "create_app"]

logger = logging.getLogger(__name__)

DEFAULT_PREFIX = "/jobs-ui"

# Path segments of unreserved URL characters (RFC 3986): nothing a browser or a proxy rewrites,
# nothing that needs escaping in a cookie path or an HTML attribute.
_PREFIX = re.compile(r"(/[A-Za-z0-9._~-]+)+")

Closer = Callable[[], Awaitable[object]]
"""Something to close when the app shuts down (a stream hub, a connection pool)."""


def check_prefix(prefix: str) -> str:
    """`prefix` if it is a path the web tail can be served under: one or more `/segment`s of
    letters, digits and `.`, `_`, `~`, `-`, no trailing slash (or "" for the root). Raises
    ConfigurationError that says what is wrong otherwise."""
    if prefix == "" or (_PREFIX.fullmatch(prefix) and not _dot_segment(prefix)):
        return prefix
    if not prefix.startswith("/"):
        problem = "it must start with '/'"
    elif prefix == "/" or prefix.endswith("/"):
        problem = "it must not end with '/' (use '' to serve at the root)"
    elif "//" in prefix:
        problem = "it must not hold an empty segment ('//')"
    elif _dot_segment(prefix):
        problem = "it must not hold a '.' or '..' segment"
    else:
        problem = "use only letters, digits and '.', '_', '~', '-' between the slashes"
    raise ConfigurationError(f"invalid prefix {prefix!r}: {problem}")


def _dot_segment(prefix: str) -> bool:
    return any(segment in {".", ".."} for segment in prefix.split("/"))


def create_app(
    app: App,
    *,
    prefix: str = DEFAULT_PREFIX,
    routes: Sequence[BaseRoute] = (),
    root_routes: Sequence[BaseRoute] = (),
    middleware: Sequence[Middleware] = (),
    on_shutdown: Sequence[Closer] = (),
    debug: bool = False,
) -> Starlette:
    """The web tail of `app` as a Starlette app: `routes` served under `prefix`.

    - `routes`: what is served under the prefix (the job routes, the admin API, the dashboard).
      The probes `/healthz` and `/readyz` are served at the root, before them (web/probes.py).
    - `root_routes`: served at the root beside the probes, outside the prefix (`/metrics`).
    - `middleware`: wraps everything the app answers, 404s included (security headers, auth).
    - `on_shutdown`: closed when the app shuts down, last given first, before the stream hub
      the job routes share (`StreamHub.for_client(app.client)`: its subscribers end with a
      `reconnect` event) and then the job App's storage and stream readers. The app opens
      nothing when it starts: the storage opens on the first request that needs it.

    `app.state.jobworker_app` holds `app` for routes that need it.
    """
    check_prefix(prefix)
    closers = tuple(on_shutdown)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await close_all(app, closers)

    web = Starlette(
        debug=debug,
        routes=[
            *probe_routes(app),  # outside the prefix and any auth: /healthz, /readyz
            *root_routes,
            *([Mount(prefix, routes=list(routes))] if prefix else routes),
        ],
        middleware=list(middleware),
        lifespan=lifespan,
    )
    web.state.jobworker_app = app
    return web


async def close_all(app: App, closers: Sequence[Closer]) -> None:
    """Close everything, even when one of them fails (each failure is logged)."""
    for close in reversed(closers):
        try:
            await close()
        except Exception:
            logger.exception("closing %r failed while the web app shut down", close)
    try:
        await StreamHub.for_client(app.client).aclose()
    except Exception:
        logger.exception("closing the stream hub failed while the web app shut down")
    try:
        await app.aclose()
    except Exception:
        logger.exception("closing the job storage failed while the web app shut down")
