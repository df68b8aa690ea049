"""jobworker inside your own FastAPI or Starlette app (the host):

- `jobs_lifespan(jobs)`: the host's lifespan, `FastAPI(lifespan=jobs_lifespan(jobs))`. At start
  it opens the App's storage (a wrong URL or a missing schema stops the start, instead of
  failing the first request); at SIGTERM or SIGINT it ends the open job streams (each with a
  `reconnect` event) so that the server is not held up by them; when the host stops it closes
  the stream hub, the live overview and the App's storage and stream readers.
- `open_jobs(jobs)`: the same as an async context manager, to enter from a lifespan of your own.
- `web_tail(jobs, prefix=...)`: what `jobworker web` serves under its prefix (the admin API and
  the dashboard, when a password is configured) plus routes you give (your `job_routes`), as one
  Starlette `Mount` with the security headers, to add to the host's routes:
  `api.router.routes.append(web_tail(jobs))`.

Nothing here imports FastAPI: the host may be either, and FastAPI stays optional.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from starlette.routing import BaseRoute, Mount

from jobworker.app import App
from jobworker.errors import ConfigurationError
from jobworker.web.admin.stats_stream import StatsFeed
from jobworker.web.app import DEFAULT_PREFIX, Closer, check_prefix, close_all
from jobworker.web.config import WebConfig
from jobworker.web.fanout import StreamHub
from jobworker.web.server import on_stop_signals, tail_middleware, tail_routes

__all__ = ["jobs_lifespan", "open_jobs", "web_tail"]


@contextlib.asynccontextmanager
async def open_jobs(
    jobs: App,
    *,
    open_at_start: bool = True,
    end_streams_on_signal: bool = True,
    on_shutdown: Sequence[Closer] = (),
) -> AsyncIterator[App]:
    """`jobs` opened for a web process, closed on the way out.

    - `open_at_start`: open the storage (and check its schema) now; with False it opens on the
      first request that needs it, as `create_app` does.
    - `end_streams_on_signal`: on SIGTERM or SIGINT (in the main thread only), end the job
      streams and the live overview at once, then call the handler that was there (uvicorn's).
      Without it uvicorn waits for open streams until its graceful timeout.
    - `on_shutdown`: more to close when the host stops, last given first, before the hub and
      the App.
    """
    hub = StreamHub.for_client(jobs.client)
    feed = StatsFeed.for_client(jobs.client)
    feed.reopen()  # a host started again in the same process (tests) serves the overview again
    closers: tuple[Closer, ...] = (feed.aclose, *on_shutdown)
    try:
        if open_at_start:
            await jobs.storage()

        async def stopping() -> None:
            await asyncio.gather(hub.aclose(), feed.aclose())

        signals = on_stop_signals(stopping) if end_streams_on_signal else contextlib.nullcontext()
        with signals:
            yield jobs
    finally:
        await close_all(jobs, closers)


def jobs_lifespan(jobs: App, **options: Any) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """The host's lifespan: `FastAPI(lifespan=jobs_lifespan(jobs))` or
    `Starlette(lifespan=jobs_lifespan(jobs))`. `options` are those of `open_jobs`."""

    @contextlib.asynccontextmanager
    async def lifespan(host: Any) -> AsyncIterator[None]:
        async with open_jobs(jobs, **options):
            yield

    return lifespan


def web_tail(
    jobs: App,
    *,
    prefix: str = DEFAULT_PREFIX,
    routes: Sequence[BaseRoute] = (),
    config: WebConfig | None = None,
) -> Mount:
    """The web tail of `jobs` as one route of the host, at `prefix`: the admin API at
    `<prefix>/api` and the dashboard at `<prefix>/` (both only when a password is configured,
    as for `jobworker web`), then `routes`, all behind the security headers. `config` defaults
    to the `JOBWORKER_WEB_*` variables. Add it to the host's routes (in FastAPI
    `api.router.routes.append(...)`); the host's lifespan closes what it uses (`jobs_lifespan`).

    The probes and `/metrics` of `jobworker web` stay the host's own business: they are not in
    it."""
    if not prefix:
        raise ConfigurationError("the web tail needs a prefix to be mounted at, such as /jobs-ui")
    check_prefix(prefix)
    config = WebConfig.load() if config is None else config
    return Mount(
        prefix,
        routes=[*tail_routes(jobs, prefix, config), *routes],
        middleware=tail_middleware(),
        name="jobworker",
    )
