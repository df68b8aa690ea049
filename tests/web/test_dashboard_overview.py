"""The dashboard's overview in Chromium: it shows the counts by status and changes them as jobs
finish without reloading the page, draws the throughput of the last hour, lists the worker
running in this process with its heartbeat, says whether a beat leads and by what, and fits a
phone's width."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from jobworker.beat import Beat

from .dashboard_support import PHONE, Site, browser_page, log_in, pg_url, site  # noqa: F401

pytestmark = pytest.mark.slow


def status_value(status: str) -> str:
    return f'[data-status="{status}"] .value'


async def count_of(page: object, status: str) -> str:
    text = await page.locator(status_value(status)).text_content()  # type: ignore[attr-defined]
    return (text or "").strip()


async def wait_for_count(page: object, status: str, expected: str) -> None:
    await page.wait_for_function(  # type: ignore[attr-defined]
        "([selector, expected]) => document.querySelector(selector)?.textContent.trim() === expected",
        arg=[status_value(status), expected],
    )


@contextlib.asynccontextmanager
async def leading_beat(served: Site) -> AsyncIterator[Beat]:
    beat = Beat(served.app)
    task = asyncio.create_task(beat.run())
    try:
        yield beat
    finally:
        beat.request_stop()
        await asyncio.wait_for(task, 15)


async def test_the_overview_follows_jobs_live(site: Site) -> None:  # noqa: F811
    async with browser_page() as (page, problems):
        await log_in(page, site)
        started = time.perf_counter()
        await page.goto(site.url + "/")
        await page.locator(status_value("succeeded")).wait_for()
        print(f"overview interactive in {1000 * (time.perf_counter() - started):.0f} ms")
        assert await count_of(page, "succeeded") == "0"
        await page.locator('[data-beat="none"]').get_by_text("No beat leader").wait_for()

        # The worker of this process, with a heartbeat that counts up.
        mine = page.locator("tr[data-worker]").filter(has_text=str(os.getpid()))
        await mine.filter(has_text=socket.gethostname()).wait_for()
        assert "worker" in (await mine.locator("td").first.text_content() or "")
        assert "s ago" in (await mine.locator("[data-heartbeat]").text_content() or "")

        await page.evaluate("window.overviewMarker = 'not reloaded'")
        for n in range(6):
            await site.app.client.aenqueue("reports.echo", {"note": f"note {n}"})
        await site.app.client.aenqueue("system.broken")
        await wait_for_count(page, "succeeded", "6")
        await wait_for_count(page, "dead", "1")
        assert await page.evaluate("window.overviewMarker") == "not reloaded"

        # The status counts link to the jobs list filtered by that status.
        link = page.locator('a[data-status="dead"]')
        assert (await link.get_attribute("href") or "").endswith("/jobs-ui/jobs?status=dead")

        # The minute they finished in has a bar: green for succeeded, red for dead.
        chart = page.get_by_role("img", name="Jobs finished per minute by outcome, last hour")
        await chart.wait_for()
        await page.locator("rect.tp-succeeded").first.wait_for()
        await page.locator("rect.tp-dead").first.wait_for()
        assert await page.locator("svg g.bar").count() == 60
        await page.wait_for_function(  # the 7 jobs, in the minute (or two) they finished in
            "() => [...document.querySelectorAll('svg g.bar')]"
            ".reduce((sum, bar) => sum + Number(bar.dataset.total), 0) === 7"
        )
        hovers = await page.locator('svg g.bar:not([data-total="0"]) > title').all_text_contents()
        assert re.search(r"succeeded [1-6]\b", " ".join(hovers)), hovers
        assert re.search(r"dead 1\b", " ".join(hovers)), hovers

        async with leading_beat(site):
            leader = page.locator('[data-beat="leader"]')
            await leader.wait_for()
            assert await leader.locator("[data-mechanism]").text_content() == "redis"
            await page.locator("tr[data-worker]").filter(has_text="beat").first.wait_for()
            instance = await page.locator(".instance").text_content() or ""
            assert "postgres" in instance and "redis" in instance
            await page.locator('.live-state[data-state="live"]').wait_for()
            await page.screenshot(path=site.screenshots / "overview.png", full_page=True)

        await page.locator('[data-beat="none"]').wait_for()  # a stopped leader clears its term
        assert await page.evaluate("window.overviewMarker") == "not reloaded"
        problems.check()


async def test_the_overview_fits_a_phone(site: Site) -> None:  # noqa: F811
    for n in range(3):
        await site.app.client.aenqueue("reports.echo", {"note": f"note {n}"})
    async with browser_page(PHONE) as (page, problems):
        await log_in(page, site)
        await wait_for_count(page, "succeeded", "3")
        await page.locator("rect.tp-succeeded").first.wait_for()
        await page.locator("tr[data-worker]").first.wait_for()
        wide = await page.evaluate("document.documentElement.scrollWidth > innerWidth")
        assert not wide  # the workers table scrolls inside its own box
        await page.screenshot(path=site.screenshots / "overview-phone.png", full_page=True)
        problems.check()


async def test_the_overview_asks_while_the_stream_is_refused(site: Site) -> None:  # noqa: F811
    refused: list[str] = []
    asked_twice = asyncio.Event()

    async def bad_gateway(route: Any) -> None:
        refused.append(route.request.url)
        if len(refused) >= 2:
            asked_twice.set()
        await route.fulfill(status=502, body="bad gateway")

    async with browser_page() as (page, problems):
        await page.route("**/api/stats/stream", bad_gateway)  # as a proxy in the way would
        await log_in(page, site)
        await wait_for_count(page, "succeeded", "0")
        await page.locator('.live-state[data-state="reconnecting"]').wait_for()
        await page.evaluate("window.overviewMarker = 'not reloaded'")
        await site.app.client.aenqueue("reports.echo", {"note": "asked for"})
        await wait_for_count(page, "succeeded", "1")  # by GET /stats
        assert await page.evaluate("window.overviewMarker") == "not reloaded"
        await asyncio.wait_for(asked_twice.wait(), 20)  # it opens the stream again later

        await page.unroute("**/api/stats/stream")
        await page.locator('.live-state[data-state="live"]').wait_for(timeout=20_000)
        await site.app.client.aenqueue("reports.echo", {"note": "streamed"})
        await wait_for_count(page, "succeeded", "2")
        assert await page.evaluate("window.overviewMarker") == "not reloaded"
        problems.check()
