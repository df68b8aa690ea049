"""The dashboard's queues page in Chromium: an admin pauses a queue and sees it paused (and the
worker stops claiming from it), then resumes it; a read-only login sees no such buttons; the
page fits a phone's width."""

from __future__ import annotations

import pytest

from .dashboard_support import PHONE, Site, browser_page, log_in, pg_url, site  # noqa: F401

pytestmark = pytest.mark.slow


async def paused(served: Site, name: str) -> bool:
    (queue,) = [q for q in await served.app.client.aqueues() if q.name == name]
    return queue.paused


async def test_pause_and_resume_a_queue(site: Site) -> None:  # noqa: F811
    await site.app.client.aenqueue("reports.echo", {"note": "before"})
    await site.app.client.aenqueue("system.cleanup", {"days": 3})
    async with browser_page() as (page, problems):
        await log_in(page, site, "admin", "/queues")
        row = page.locator('tr[data-queue="reports"]')
        await row.wait_for()
        assert await row.get_attribute("data-paused") == "false"

        await page.get_by_role("button", name="Pause reports").click()
        await page.locator('tr[data-queue="reports"][data-paused="true"]').wait_for()
        await row.get_by_text("paused", exact=True).wait_for()
        assert await paused(site, "reports")

        # Paused: a job enqueued now waits, and the page counts it as queued.
        await site.app.client.aenqueue("reports.echo", {"note": "while paused"})
        await row.locator('[data-count="queued"]').filter(has_text="1").wait_for()
        await page.screenshot(path=site.screenshots / "queues.png", full_page=True)

        await page.get_by_role("button", name="Resume reports").click()
        await page.locator('tr[data-queue="reports"][data-paused="false"]').wait_for()
        assert not await paused(site, "reports")
        # Resumed, the worker runs it, and the page sees that by itself (it refreshes).
        await row.locator('[data-status="succeeded"]').filter(has_text="succeeded 2").wait_for()
        await row.locator('[data-count="queued"]').filter(has_text="0").wait_for()
        problems.check()


async def test_a_read_only_login_cannot_pause(site: Site) -> None:  # noqa: F811
    await site.app.client.aenqueue("reports.echo", {"note": "hello"})
    await site.app.client.apause_queue("maintenance")
    async with browser_page(PHONE) as (page, problems):
        await log_in(page, site, "readonly", "/queues")
        await page.locator('tr[data-queue="maintenance"][data-paused="true"]').wait_for()
        await page.locator('tr[data-queue="reports"]').wait_for()
        assert await page.get_by_role("button", name="Pause reports").count() == 0
        assert await page.get_by_role("button", name="Resume maintenance").count() == 0
        assert await page.locator("table.queues button").count() == 0
        wide = await page.evaluate("document.documentElement.scrollWidth > innerWidth")
        assert not wide
        problems.check()
