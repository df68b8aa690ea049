"""What the admin dashboard reads besides the plain routes: the overview's throughput and its
estimates, scan-limited job pages, and the live overview over SSE (served by uvicorn)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from jobworker import App
from jobworker.testing import adrain
from jobworker.web.admin import admin_api, handlers
from jobworker.web.admin.overview import StatsReader
from jobworker.web.admin.stats_stream import StatsFeed, stats_stream_endpoint
from jobworker.web.config import WebConfig

from .admin_support import (  # noqa: F401 (fixtures)
    ADMIN_PASSWORD,
    API,
    PREFIX,
    VIEWER_PASSWORD,
    Browser,
    Jobs,
    admin,
    app,
    config,
    jobs,
    site,
)
from .server import read_sse, serving
from .support import Sse


async def test_stats_carry_an_hour_of_throughput_by_minute(
    admin: Browser, app: App, jobs: Jobs
) -> None:
    await jobs.ok.adelay(n=1)
    await jobs.ok.adelay(n=2)
    await jobs.boom.adelay()
    await adrain(app)
    stats = (await admin.get("/stats")).json()
    assert stats["estimated"] == [] and all(q["estimated"] is False for q in stats["queues"])
    throughput = stats["throughput"]
    assert set(throughput) == {"bucketSeconds", "since", "outcomes", "buckets"}
    assert throughput["bucketSeconds"] == 60
    assert throughput["outcomes"] == ["succeeded", "failed", "dead", "cancelled"]
    buckets = throughput["buckets"]
    assert len(buckets) == 60 and buckets[0]["at"] == throughput["since"]
    starts = [datetime.fromisoformat(bucket["at"]) for bucket in buckets]
    assert all(b - a == timedelta(seconds=60) for a, b in itertools.pairwise(starts))
    assert starts[0].second == 0 and starts[0].microsecond == 0
    assert all(set(b["counts"]) == set(throughput["outcomes"]) for b in buckets)
    total = {outcome: sum(b["counts"][outcome] for b in buckets) for outcome in ("succeeded",)}
    assert total["succeeded"] == 2
    assert sum(b["counts"]["dead"] for b in buckets) == 1
    assert sum(b["counts"]["failed"] + b["counts"]["cancelled"] for b in buckets) == 0
    # The newest bucket holds now: every attempt ended in the last two minutes.
    assert sum(sum(b["counts"].values()) for b in buckets[-2:]) == 3


async def test_settled_minutes_are_read_once(app: App, jobs: Jobs) -> None:
    reader = StatsReader(app.client)
    await jobs.ok.adelay()
    await adrain(app)
    first = await reader.read()
    assert reader.throughput.buckets_read == 60
    second = await reader.read()
    # Only the minutes that may still change were read again (the last one or two, as the
    # minute turns), and the answer is the same.
    assert reader.throughput.buckets_read - 60 <= 3
    assert second.throughput.buckets[-1].counts == first.throughput.buckets[-1].counts or (
        second.throughput.since > first.throughput.since
    )


async def test_a_filter_reads_at_most_the_scan_limit_then_says_so(
    admin: Browser, app: App, jobs: Jobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    wanted = [await jobs.cleanup.adelay(days=n) for n in range(2)]
    for n in range(7):
        await jobs.ok.adelay(n=n)
    monkeypatch.setattr(handlers, "SCAN_LIMIT", 3)
    pages = []
    before = None
    while True:
        query = {"search": "cleanup", "limit": 2, **({"before": before} if before else {})}
        page = (await admin.get("/jobs", **query)).json()
        pages.append(page)
        before = page["next"]
        if before is None:
            break
    # 9 jobs, 3 read a page: two pages find nothing, the third finds both (the oldest rows).
    assert [p["scanLimited"] for p in pages] == [True, True, False, False]
    assert [len(p["jobs"]) for p in pages] == [0, 0, 2, 0]
    found = [job["jobId"] for p in pages for job in p["jobs"]]
    assert found == [str(handle.job_id) for handle in reversed(wanted)]
    # A filter an index serves, or none, fills its page whatever the scan limit.
    for query in ({"limit": 5}, {"status": "queued", "limit": 5}):
        page = (await admin.get("/jobs", **query)).json()
        assert len(page["jobs"]) == 5 and page["scanLimited"] is False


# The live overview, served by uvicorn -------------------------------------------------------


@contextlib.asynccontextmanager
async def served(app: App, config: WebConfig, feed: StatsFeed) -> AsyncIterator[str]:
    api = admin_api(
        app.client, config, prefix=PREFIX, extra_endpoints=[stats_stream_endpoint(feed)]
    )
    assert api is not None
    async with serving(Starlette(routes=[Mount(API, app=api)])) as base:
        yield base


async def logged_in(base: str, username: str, password: str) -> httpx.AsyncClient:
    http = httpx.AsyncClient(base_url=base, timeout=10)
    answer = await http.post(
        f"{API}/login", json={"username": username, "password": password}, headers={"Origin": base}
    )
    assert answer.status_code == 200, answer.text
    return http


def stats_events(count: int):  # type: ignore[no-untyped-def]
    def enough(parsed: list[Sse]) -> bool:
        return len([e for e in parsed if e.event == "stats"]) >= count

    return enough


def snapshots(parsed: list[Sse]) -> list[str]:
    return [event.data for event in parsed if event.event == "stats"]


@pytest.fixture
def feed(app: App) -> StatsFeed:
    return StatsFeed(StatsReader(app.client), interval=0.2)


async def test_two_streams_share_one_poller_and_get_the_same_snapshots(
    app: App, config: WebConfig, feed: StatsFeed
) -> None:
    async with served(app, config, feed) as base:
        first, second = (
            await logged_in(base, "admin", ADMIN_PASSWORD),
            await logged_in(base, "admin", ADMIN_PASSWORD),
        )
        url = f"{API}/stats/stream"
        (status_a, seen_a), (status_b, seen_b) = await asyncio.gather(
            read_sse(first, url, until=stats_events(3)),
            read_sse(second, url, until=stats_events(3)),
        )
        assert status_a == status_b == 200
        assert seen_a[0].retry is not None
        a, b = snapshots(seen_a)[:3], snapshots(seen_b)[:3]
        # The same bytes, from the same polls: whoever joined second got the newest at once.
        assert a[-1] == b[-1] or a[1:] == b[:2] or b[1:] == a[:2]
        assert feed.pollers_started == 1 and feed.polls <= 5
        assert Sse(data=a[0]).json["counts"]["queued"] == 0
        for client in (first, second):
            await client.aclose()
        for _ in range(100):
            if not feed.running:
                break
            await asyncio.sleep(0.02)
        assert not feed.running and feed.subscribers == 0
        polls = feed.polls
        await asyncio.sleep(0.5)
        assert feed.polls == polls  # nobody listens: nothing is read


async def test_the_stream_shows_new_jobs_and_a_viewer_may_follow_it(
    app: App, config: WebConfig, feed: StatsFeed, jobs: Jobs
) -> None:
    async with served(app, config, feed) as base:
        viewer = await logged_in(base, "viewer", VIEWER_PASSWORD)
        url = f"{API}/stats/stream"
        first_seen = asyncio.Event()

        def queued_two(parsed: list[Sse]) -> bool:
            if snapshots(parsed):
                first_seen.set()
            return any(Sse(data=d).json["counts"]["queued"] == 2 for d in snapshots(parsed))

        async def enqueue_after_the_first_snapshot() -> None:
            await first_seen.wait()
            await jobs.ok.adelay(n=1)
            await jobs.ok.adelay(n=2)

        (status, seen), _ = await asyncio.gather(
            read_sse(viewer, url, until=queued_two), enqueue_after_the_first_snapshot()
        )
        assert status == 200
        counts = [Sse(data=d).json["counts"]["queued"] for d in snapshots(seen)]
        assert counts[0] == 0 and counts[-1] == 2
        await viewer.aclose()
        async with httpx.AsyncClient(base_url=base, timeout=10) as anonymous:
            assert (await anonymous.get(url)).status_code == 401


async def test_closing_the_feed_ends_every_stream_at_once(
    app: App, config: WebConfig, feed: StatsFeed
) -> None:
    async with served(app, config, feed) as base:
        admin_http = await logged_in(base, "admin", ADMIN_PASSWORD)
        reading = asyncio.create_task(read_sse(admin_http, f"{API}/stats/stream"))
        for _ in range(1500):  # up to 30 s for two polls: a loaded machine is slow
            if feed.polls >= 2:
                break
            await asyncio.sleep(0.02)
        assert feed.polls >= 2
        started = asyncio.get_running_loop().time()
        await feed.aclose()
        status, seen = await asyncio.wait_for(reading, 5)
        assert asyncio.get_running_loop().time() - started < 1.0
        assert status == 200 and len(snapshots(seen)) >= 2 and not feed.running
        # A stream opened while the feed is closed ends at once; reopened, it serves again.
        status, seen = await asyncio.wait_for(read_sse(admin_http, f"{API}/stats/stream"), 5)
        assert status == 200 and snapshots(seen) == []
        feed.reopen()
        status, seen = await read_sse(admin_http, f"{API}/stats/stream", until=stats_events(1))
        assert snapshots(seen)
        await admin_http.aclose()
