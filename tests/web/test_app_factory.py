"""The app factory: routes under a checked prefix, a lifespan that opens nothing and closes the
job App's storage and whatever it is given, and mounting in a Starlette or FastAPI host."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from jobworker import App, JobContext, Registry
from jobworker.errors import ConfigurationError
from jobworker.web.app import DEFAULT_PREFIX, check_prefix, create_app
from jobworker.web.fanout import StreamHub, SubscriptionEnded
from jobworker.web.job_routes import allow_all, job_routes

from ..pg import migrate_schema, temporary_database


def counts_route(app: App) -> Route:
    async def counts(request: Request) -> JSONResponse:
        counted = await app.client.acounts()
        return JSONResponse({status.value: n for status, n in counted.items()})

    return Route("/counts", counts)


@pytest.fixture
async def job_app(sqlite_url: str) -> AsyncIterator[App]:
    instance = App(sqlite_url, registry=Registry())
    yield instance
    await instance.aclose()


@contextlib.asynccontextmanager
async def serving(asgi: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """`asgi` started (its lifespan entered, as a server does) and a client of it; shut down
    on the way out."""
    async with (
        asgi.router.lifespan_context(asgi),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://web") as http,
    ):
        yield http


@pytest.mark.parametrize("prefix", ["/jobs-ui", "/ops/jobs", "/a.b_c~d-1", ""])
def test_good_prefixes_pass(prefix: str) -> None:
    assert check_prefix(prefix) == prefix


@pytest.mark.parametrize(
    ("prefix", "why"),
    [
        ("jobs-ui", "must start with '/'"),
        ("/", "must not end with '/'"),
        ("/jobs-ui/", "must not end with '/'"),
        ("/ops//jobs", "empty segment"),
        ("/ops/../etc", "'.' or '..' segment"),
        ("/jobs ui", "only letters, digits"),
        ("/jobs?x=1", "only letters, digits"),
        ("/jobs<script>", "only letters, digits"),
        ("/jöbs", "only letters, digits"),
    ],
)
def test_bad_prefixes_are_refused_with_the_reason(prefix: str, why: str) -> None:
    with pytest.raises(ConfigurationError, match="invalid prefix") as caught:
        check_prefix(prefix)
    assert why in str(caught.value)


def test_create_app_refuses_a_bad_prefix(job_app: App) -> None:
    with pytest.raises(ConfigurationError, match="invalid prefix '/x/'"):
        create_app(job_app, prefix="/x/")


async def test_routes_are_served_under_the_prefix_only(job_app: App) -> None:
    web = create_app(job_app, routes=[counts_route(job_app)])
    assert web.state.jobworker_app is job_app
    async with serving(web) as http:
        assert (await http.get(f"{DEFAULT_PREFIX}/counts")).json()["queued"] == 0
        assert (await http.get("/counts")).status_code == 404
        assert (await http.get(f"{DEFAULT_PREFIX}/nothing")).status_code == 404


async def test_an_empty_prefix_serves_at_the_root(job_app: App) -> None:
    async with serving(create_app(job_app, prefix="", routes=[counts_route(job_app)])) as http:
        assert (await http.get("/counts")).status_code == 200


async def test_middleware_wraps_every_answer(job_app: App) -> None:
    class Stamp:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            async def stamped(message: dict[str, object]) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = [*message["headers"], (b"x-stamp", b"1")]  # type: ignore[misc]
                await send(message)

            await self.app(scope, receive, stamped)

    web = create_app(job_app, routes=[counts_route(job_app)], middleware=[Middleware(Stamp)])
    async with serving(web) as http:
        assert (await http.get(f"{DEFAULT_PREFIX}/counts")).headers["x-stamp"] == "1"
        assert (await http.get("/elsewhere")).headers["x-stamp"] == "1"


async def test_shutdown_closes_what_it_was_given_last_first_even_when_one_fails(
    job_app: App, caplog: pytest.LogCaptureFixture
) -> None:
    closed: list[str] = []

    async def close_hub() -> None:
        closed.append("hub")

    async def close_broken() -> None:
        closed.append("broken")
        raise RuntimeError("cannot close")

    async def close_pool() -> None:
        closed.append("pool")

    web = create_app(job_app, on_shutdown=[close_hub, close_broken, close_pool])
    async with serving(web):
        assert closed == []
    assert closed == ["pool", "broken", "hub"]
    assert "cannot close" in caplog.text


async def test_shutdown_stops_the_stream_hub_of_the_job_routes(job_app: App) -> None:
    @job_app.job(name="factory.wait")
    def wait(ctx: JobContext) -> None: ...

    handle = await wait.adelay()  # queued, never run: its stream stays open
    web = create_app(job_app, routes=job_routes(job_app.client, authorize=allow_all))
    hub = StreamHub.for_client(job_app.client)

    async def follow() -> str:
        async with hub.subscribe(handle.job_id, 0) as subscription:
            try:
                while True:
                    await subscription.next(idle=0.1)
            except SubscriptionEnded as ended:
                return ended.reason

    async with serving(web):
        follower = asyncio.create_task(follow())
        await asyncio.sleep(0.3)
        assert hub.active_readers == 1 and not follower.done()
    assert hub.active_readers == 0
    assert await asyncio.wait_for(follower, 5) == "the server is stopping"


async def _connections(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    finally:
        await conn.close()


@pytest.fixture
def fresh_pg() -> Iterator[str]:
    """A database of its own, so its connections are this test's only."""
    with temporary_database() as url:
        asyncio.run(migrate_schema(url, "jobworker"))
        yield url


async def test_the_lifespan_opens_nothing_and_closes_the_storage(fresh_pg: str) -> None:
    job_app = App(fresh_pg, registry=Registry())
    web = create_app(job_app, routes=[counts_route(job_app)])
    async with serving(web) as http:
        assert await _connections(fresh_pg) == 0  # started, nothing opened
        assert (await http.get(f"{DEFAULT_PREFIX}/counts")).status_code == 200
        assert await _connections(fresh_pg) > 0
    assert await _connections(fresh_pg) == 0


def own_route() -> Route:
    async def own(request: Request) -> PlainTextResponse:
        return PlainTextResponse("host")

    return Route("/own", own)


async def test_mounts_in_a_starlette_host_whose_lifespan_closes_it(job_app: App) -> None:
    closed: list[str] = []

    async def close_hub() -> None:
        closed.append("hub")

    web = create_app(job_app, routes=[counts_route(job_app)], on_shutdown=[close_hub])

    @contextlib.asynccontextmanager
    async def lifespan(host: Starlette) -> AsyncIterator[None]:
        async with web.router.lifespan_context(web):
            yield

    host = Starlette(routes=[own_route(), Mount("/", app=web)], lifespan=lifespan)
    async with serving(host) as http:
        assert (await http.get("/own")).text == "host"
        assert (await http.get(f"{DEFAULT_PREFIX}/counts")).json()["queued"] == 0
        assert (await http.get("/nothing")).status_code == 404
    assert closed == ["hub"]


async def test_mounts_in_a_fastapi_host_whose_lifespan_closes_it(job_app: App) -> None:
    closed: list[str] = []

    async def close_hub() -> None:
        closed.append("hub")

    web = create_app(
        job_app, prefix="/ops/jobs", routes=[counts_route(job_app)], on_shutdown=[close_hub]
    )
    host = FastAPI(lifespan=lambda host: web.router.lifespan_context(web))

    @host.get("/own")
    async def own() -> dict[str, str]:
        return {"who": "host"}

    host.mount("/", web)
    async with serving(host) as http:
        assert (await http.get("/own")).json() == {"who": "host"}
        assert (await http.get("/ops/jobs/counts")).json()["queued"] == 0
        assert (await http.get("/jobs-ui/counts")).status_code == 404
    assert closed == ["hub"]
