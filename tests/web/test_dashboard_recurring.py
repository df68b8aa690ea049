"""The dashboard's recurring page in Chromium: a definition registered with
`client.aschedule_recurring` shows its next fire time in its own zone and in the viewer's, an
admin disables, enables and runs it (the run's job is linked), the API's refusal for a user job's
definition is shown as it says it, and a read-only login sees no buttons."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from .dashboard_support import PHONE, Site, browser_page, log_in, pg_url, site  # noqa: F401

pytestmark = pytest.mark.slow

VIEWER_ZONE = "America/New_York"


async def in_zone(page: Any, zone: str) -> None:
    """The page's clock as a viewer in `zone` with an en-US browser would have it."""
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("Emulation.setTimezoneOverride", {"timezoneId": zone})
    await cdp.send("Emulation.setLocaleOverride", {"locale": "en-US"})


def clock(moment: datetime, zone: str) -> str:
    """How en-US writes the time of `moment` in `zone`: "9:00 AM"."""
    local = moment.astimezone(ZoneInfo(zone))
    return f"{local.hour % 12 or 12}:{local.minute:02d} {'AM' if local.hour < 12 else 'PM'}"


async def cell_text(row: Any, when: str) -> str:
    text = await row.locator(f'[data-when="{when}"]').text_content() or ""
    return " ".join(text.replace("\u202f", " ").split())


async def enabled(served: Site, name: str) -> bool:
    (found,) = [r for r in await served.app.client.alist_recurring() if r.name == name]
    return found.enabled


async def test_see_disable_enable_and_run_a_recurring_job(site: Site) -> None:  # noqa: F811
    client = site.app.client
    await client.aschedule_recurring(
        "cleanup.tokyo", "0 9 * * *", "system.cleanup", {"days": 9}, timezone="Asia/Tokyo"
    )
    await client.aschedule_recurring("echo.hourly", "0 * * * *", "reports.echo", {"note": "hi"})
    (tokyo,) = [r for r in (await client.abeat_status()).recurring if r.name == "cleanup.tokyo"]
    assert tokyo.next_fire_at is not None

    async with browser_page() as (page, problems):
        await in_zone(page, VIEWER_ZONE)
        await log_in(page, site, "admin", "/recurring")
        row = page.locator('tr[data-recurring="cleanup.tokyo"]')
        await row.wait_for()

        # The next fire in Tokyo (9:00 AM, GMT+9) and in the viewer's New York.
        in_tokyo = await cell_text(row, "zone")
        assert clock(tokyo.next_fire_at, "Asia/Tokyo") == "9:00 AM"
        assert "9:00 AM GMT+9" in in_tokyo, in_tokyo
        in_new_york = await cell_text(row, "viewer")
        assert clock(tokyo.next_fire_at, VIEWER_ZONE) in in_new_york, in_new_york
        assert "EST" in in_new_york or "EDT" in in_new_york, in_new_york
        header = await page.locator("table.recurring thead").text_content() or ""
        assert VIEWER_ZONE in header
        assert "Asia/Tokyo" in (await row.text_content() or "")
        assert "0 9 * * *" in (await row.text_content() or "")

        await page.get_by_role("button", name="Disable cleanup.tokyo").click()
        await page.locator('tr[data-recurring="cleanup.tokyo"][data-enabled="false"]').wait_for()
        assert not await enabled(site, "cleanup.tokyo")
        await page.get_by_role("button", name="Enable cleanup.tokyo").click()
        await page.locator('tr[data-recurring="cleanup.tokyo"][data-enabled="true"]').wait_for()
        assert await enabled(site, "cleanup.tokyo")

        await page.get_by_role("button", name="Run cleanup.tokyo now").click()
        notice = page.locator("[data-run-job]")
        await notice.wait_for()
        job_id = await notice.get_attribute("data-run-job")
        link = notice.get_by_role("link", name=str(job_id))
        assert (await link.get_attribute("href") or "").endswith(f"/jobs-ui/jobs/{job_id}")
        job = await client.aget(str(job_id))
        assert job is not None and job.job_type == "system.cleanup"
        await page.screenshot(path=site.screenshots / "recurring.png", full_page=True)

        # A user job's definition: the API refuses, and the page says what it said.
        await page.get_by_role("button", name="Disable echo.hourly").click()
        await page.get_by_role("alert").filter(has_text="user jobs are read-only").wait_for()
        assert await enabled(site, "echo.hourly")
        problems.check()


async def test_a_read_only_login_sees_no_recurring_buttons(site: Site) -> None:  # noqa: F811
    await site.app.client.aschedule_recurring("cleanup.nightly", "30 2 * * *", "system.cleanup")
    async with browser_page(PHONE) as (page, problems):
        await log_in(page, site, "readonly", "/recurring")
        await page.locator('tr[data-recurring="cleanup.nightly"]').wait_for()
        assert await page.locator("table.recurring button").count() == 0
        for name in ("Disable", "Enable", "Run"):
            assert await page.get_by_role("button", name=name).count() == 0
        wide = await page.evaluate("document.documentElement.scrollWidth > innerWidth")
        assert not wide
        problems.check()
