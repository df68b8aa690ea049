"""`follow`, the typed Python reader of an SSE route, against a real uvicorn server: payloads in
the job's own types, resuming, 204 after the end, reconnecting after the server dropped it."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from jobworker import App
from jobworker.errors import JobNotFoundError
from jobworker.events.model import Chunk, Lifecycle, Log, Metric, Progress, TypedEvent
from jobworker.web.fanout import StreamHub
from jobworker.web.follow import follow
from jobworker.web.job_routes import allow_all, job_routes

from ..conftest import Store
from .server import serving
from .support import GATES, Step, Summary, every_kind, make_app, running_worker

pytestmark = pytest.mark.slow

KEPT = {"lifecycle", "progress", "result"}


@pytest.fixture
async def jobs(tmp_path: Path) -> AsyncIterator[App]:
    app = make_app(Store("sqlite", f"sqlite:///{tmp_path / 'jobs.db'}"))
    yield app
    await app.aclose()


async def served_hub(jobs: App, **hub_options: float) -> tuple[StreamHub, Starlette]:
    hub = StreamHub(jobs.client, linger=0, **hub_options)  # type: ignore[arg-type]
    routes = job_routes(jobs.client, authorize=allow_all, hub=hub, retry_ms=100)
    return hub, Starlette(routes=[Mount("/reports", routes=routes)], lifespan=hub.lifespan)


async def every(url: str, **options: object) -> list[TypedEvent]:
    return [event async for event in follow(url, **options)]  # type: ignore[arg-type]


async def test_events_come_in_the_jobs_own_types(jobs: App) -> None:
    _, web = await served_hub(jobs)
    async with serving(web) as base, running_worker(jobs):
        handle = await jobs.client.aenqueue("web.every_kind", {"owner": "ada", "rows": 3})
        url = f"{base}/reports/{handle.job_id}/stream"
        events = await asyncio.wait_for(every(url, job=every_kind), 30)
        expected = [event async for event in jobs.client.stream_typed(handle.job_id)]
        assert events == expected
        by_kind = {event.kind.value: event.data for event in events}
        assert isinstance(by_kind["lifecycle"], Lifecycle) and by_kind["lifecycle"].terminal
        assert isinstance(by_kind["log"], Log) and isinstance(by_kind["chunk"], Chunk)
        assert isinstance(by_kind["metric"], Metric)
        typed = [e.data.value for e in events if isinstance(e.data, Progress) and e.data.value]
        assert typed == [Step(rows=1), Step(rows=2), Step(rows=3)]
        assert by_kind["result"] == Summary(owner="ada", rows=3, note="")
        # Resuming in the middle, and after the end (204: nothing).
        middle = events[len(events) // 2].seq
        resumed = await every(url, job=every_kind.definition, last_event_id=middle)
        assert resumed == [event for event in expected if event.seq > middle]
        assert await every(url, last_event_id=events[-1].seq) == []
        with pytest.raises(JobNotFoundError):
            await every(f"{base}/reports/{uuid.uuid4()}/stream")


async def test_it_reconnects_after_the_server_dropped_it(jobs: App) -> None:
    hub, web = await served_hub(jobs, queue_size=4)
    name = f"follow-{uuid.uuid4()}"
    opened = GATES[name] = asyncio.Event()
    try:
        async with serving(web) as base, running_worker(jobs):
            handle = await jobs.client.aenqueue(
                "web.every_kind",
                {"owner": "ada", "rows": 300, "chunk_bytes": 30_000, "gate": name, "pause": 0.01},
            )
            got: list[TypedEvent] = []
            url = f"{base}/reports/{handle.job_id}/stream"
            # A small receive buffer: what the reader does not read soon holds the server up.
            small = [(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)]
            transport = httpx.AsyncHTTPTransport(socket_options=small)
            async with httpx.AsyncClient(transport=transport) as client:
                async for event in follow(url, job=every_kind, client=client):
                    got.append(event)
                    if len(got) == 1:
                        opened.set()
                        await asyncio.sleep(3)  # falls behind: the server drops it
            full = [event async for event in jobs.client.stream_typed(handle.job_id)]
        assert hub.dropped >= 1
        seqs = [event.seq for event in got]
        assert seqs == sorted(set(seqs))
        kept = [event for event in full if event.kind.value in KEPT]
        assert [event for event in got if event.kind.value in KEPT] == kept
        assert got[-1] == full[-1] and got[-2].data == Summary(owner="ada", rows=300, note="")
    finally:
        GATES.pop(name, None)
