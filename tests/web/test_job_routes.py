"""The job routes over the ASGI app (httpx's ASGI transport): the job as JSON, 404 for an unknown
job and for one the hook denies, history paging, bad parameters, and the SSE stream of a finished
job (resuming, 204 after its end)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import msgspec
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Mount

from jobworker import App
from jobworker.models import JobDescriptor
from jobworker.testing import adrain
from jobworker.web.fanout import StreamHub
from jobworker.web.job_routes import allow_all, job_routes

from ..conftest import Store
from .support import job_events, make_app, owner_only, parse_sse, seqs

SCRIPT = "<script>alert('owned')</script>"


@pytest.fixture
async def jobs(tmp_path: Path) -> AsyncIterator[App]:
    app = make_app(Store("sqlite", f"sqlite:///{tmp_path / 'jobs.db'}"))
    yield app
    await app.aclose()


@pytest.fixture
async def hub(jobs: App) -> AsyncIterator[StreamHub]:
    hub = StreamHub(jobs.client, linger=0)
    yield hub
    await hub.aclose()


@pytest.fixture
async def http(jobs: App, hub: StreamHub) -> AsyncIterator[httpx.AsyncClient]:
    routes = job_routes(jobs.client, authorize=owner_only, hub=hub)
    web = Starlette(routes=[Mount("/reports", routes=routes)])
    transport = httpx.ASGITransport(app=web)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://test", headers={"x-user": "ada"}
    ) as client:
        yield client


async def finished_job(jobs: App, owner: str = "ada", note: str = "") -> uuid.UUID:
    handle = await jobs.client.aenqueue("web.every_kind", {"owner": owner, "note": note})
    await adrain(jobs)
    return handle.job_id


async def test_the_job_as_json(jobs: App, http: httpx.AsyncClient) -> None:
    job_id = await finished_job(jobs, note=SCRIPT)
    response = await http.get(f"/reports/{job_id}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-content-type-options"] == "nosniff"
    body = response.json()
    assert body["jobId"] == str(job_id) and body["status"] == "succeeded"
    assert body["jobType"] == "web.every_kind"
    # The hostile text comes back as JSON text, in a JSON response: nothing renders it.
    assert msgspec.json.decode(body["argsJson"])["note"] == SCRIPT
    assert msgspec.json.decode(body["resultJson"])["note"] == SCRIPT


async def test_unknown_jobs_and_ids_that_are_no_uuid_are_404(
    jobs: App, http: httpx.AsyncClient
) -> None:
    for path in (f"/reports/{uuid.uuid4()}", "/reports/not-a-uuid", "/reports/12/stream"):
        response = await http.get(path)
        assert response.status_code == 404
        assert response.json() == {"error": "no such job"}


async def test_a_job_the_hook_denies_is_404_exactly_like_an_unknown_one(
    jobs: App, http: httpx.AsyncClient
) -> None:
    job_id = await finished_job(jobs, owner="mallory", note=SCRIPT)
    unknown = await http.get(f"/reports/{uuid.uuid4()}")
    for suffix in ("", "/stream", "/events"):
        denied = await http.get(f"/reports/{job_id}{suffix}")
        assert denied.status_code == 404
        assert denied.content == unknown.content
        assert denied.headers == unknown.headers
        assert b"script" not in denied.content
    allowed = await http.get(f"/reports/{job_id}", headers={"x-user": "mallory"})
    assert allowed.status_code == 200


async def test_an_async_hook_and_allow_all(jobs: App, hub: StreamHub) -> None:
    job_id = await finished_job(jobs, owner="bob")
    seen: list[str] = []

    async def check(request: Request, job: JobDescriptor) -> bool:
        seen.append(job.job_type)
        return request.query_params.get("token") == "yes"

    web = Starlette(
        routes=[
            Mount("/checked", routes=job_routes(jobs.client, authorize=check, hub=hub)),
            Mount("/open", routes=job_routes(jobs.client, authorize=allow_all, hub=hub)),
        ]
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=web), base_url="http://test"
    ) as client:
        assert (await client.get(f"/checked/{job_id}")).status_code == 404
        assert (await client.get(f"/checked/{job_id}?token=yes")).status_code == 200
        assert (await client.get(f"/open/{job_id}")).status_code == 200
    assert seen == ["web.every_kind", "web.every_kind"]


async def test_history_pages_by_sequence(jobs: App, http: httpx.AsyncClient) -> None:
    job_id = await finished_job(jobs)
    stored = await jobs.client.aevents(job_id, 0, 1000)
    everything = (await http.get(f"/reports/{job_id}/events")).json()
    assert [event["seq"] for event in everything] == [event.seq for event in stored]
    assert {event["kind"] for event in everything} == {"lifecycle", "progress", "result"}
    paged: list[dict[str, object]] = []
    after = 0
    while True:
        page = (await http.get(f"/reports/{job_id}/events?after_sequence={after}&limit=2")).json()
        if not page:
            break
        assert len(page) <= 2
        paged += page
        after = page[-1]["seq"]
    assert paged == everything
    assert everything[-1]["status"] == "succeeded"
    assert msgspec.json.decode(everything[-2]["resultJson"])["rows"] == 3


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("after_sequence=-1", "after_sequence"),
        ("after_sequence=x", "after_sequence"),
        ("after_sequence=1.5", "after_sequence"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
    ],
)
async def test_bad_history_parameters_are_400(
    jobs: App, http: httpx.AsyncClient, query: str, message: str
) -> None:
    job_id = await finished_job(jobs)
    response = await http.get(f"/reports/{job_id}/events?{query}")
    assert response.status_code == 400
    assert message in response.json()["error"]


async def test_a_bad_last_event_id_is_400(jobs: App, http: httpx.AsyncClient) -> None:
    job_id = await finished_job(jobs)
    for request in (
        http.get(f"/reports/{job_id}/stream?last_event_id=abc"),
        http.get(f"/reports/{job_id}/stream", headers={"last-event-id": "-3"}),
    ):
        response = await request
        assert response.status_code == 400
        assert "event id" in response.json()["error"]


async def test_the_stream_of_a_finished_job(jobs: App, http: httpx.AsyncClient) -> None:
    job_id = await finished_job(jobs)
    expected = [event async for event in jobs.client.stream(job_id)]
    response = await http.get(f"/reports/{job_id}/stream")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    parsed = parse_sse(response.text)
    assert parsed[0].retry == 2000  # the hint comes first
    events = job_events(parsed)
    assert [(int(e.id or 0), e.event) for e in events] == [
        (event.seq, event.kind.value) for event in expected
    ]
    for sse in events:
        data = sse.json
        assert data["seq"] == int(sse.id or 0) and data["kind"] == sse.event
    assert events[-1].json["status"] == "succeeded"


async def test_resuming_the_stream(jobs: App, http: httpx.AsyncClient) -> None:
    job_id = await finished_job(jobs)
    expected = [event.seq async for event in jobs.client.stream(job_id)]
    middle = expected[len(expected) // 2]
    url = f"/reports/{job_id}/stream"
    by_header = await http.get(url, headers={"last-event-id": str(middle)})
    assert seqs(parse_sse(by_header.text)) == [seq for seq in expected if seq > middle]
    by_query = await http.get(f"{url}?last_event_id={middle}")
    assert seqs(parse_sse(by_query.text)) == [seq for seq in expected if seq > middle]
    # EventSource reconnects to the same URL with the header: the header wins.
    both = await http.get(f"{url}?last_event_id=1", headers={"last-event-id": str(middle)})
    assert seqs(parse_sse(both.text)) == [seq for seq in expected if seq > middle]


async def test_resuming_at_or_after_the_terminal_event_is_204(
    jobs: App, http: httpx.AsyncClient
) -> None:
    job_id = await finished_job(jobs)
    last = [event.seq async for event in jobs.client.stream(job_id)][-1]
    for after in (last, last + 10):
        response = await http.get(
            f"/reports/{job_id}/stream", headers={"last-event-id": str(after)}
        )
        assert response.status_code == 204 and response.content == b""
    before = await http.get(f"/reports/{job_id}/stream", headers={"last-event-id": str(last - 1)})
    assert before.status_code == 200 and seqs(parse_sse(before.text)) == [last]


async def test_fastapi_mounts_the_routes(jobs: App, hub: StreamHub) -> None:
    job_id = await finished_job(jobs)
    api = FastAPI()
    api.router.routes.extend(
        [Mount("/reports", routes=job_routes(jobs.client, authorize=allow_all, hub=hub))]
    )
    api.mount("/other", Starlette(routes=job_routes(jobs.client, authorize=allow_all, hub=hub)))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api), base_url="http://test"
    ) as client:
        for prefix in ("/reports", "/other"):
            assert (await client.get(f"{prefix}/{job_id}")).json()["status"] == "succeeded"
            events = (await client.get(f"{prefix}/{job_id}/events?limit=1")).json()
            assert [event["seq"] for event in events] == [1]
            assert seqs(parse_sse((await client.get(f"{prefix}/{job_id}/stream")).text))
