"""The dashboard shows a job type by the label its code gives it (icon and display name, from the
job-type catalogue) in the jobs list, a job's page and the recurring page; a type without one
shows its name, as before."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from jobworker.catalogue import job_type_specs

from .dashboard_jobs_support import enqueue
from .dashboard_support import Site, browser_page, log_in, pg_url, site  # noqa: F401

pytestmark = pytest.mark.slow


async def label_echo(site: Site) -> None:  # noqa: F811
    """The catalogue as a worker whose `reports.echo` has a label would have written it (once
    the site's own worker has written its rows: its start must not write over these)."""
    deadline = asyncio.get_running_loop().time() + 30
    while not await site.app.client.ajob_types():
        assert asyncio.get_running_loop().time() < deadline, "the site's worker wrote no types"
        await asyncio.sleep(0.05)
    specs = [
        msgspec.structs.replace(spec, display_name="Echo a note", icon="🔊")
        if spec.name == "reports.echo"
        else spec
        for spec in job_type_specs(site.jobs.registry, site.app.settings)
    ]
    storage = site.app.create_storage()
    await storage.open()
    try:
        await storage.catalogue.upsert_types(specs, "test")
    finally:
        await storage.close()


async def test_job_types_show_their_icon_and_display_name(site: Site) -> None:  # noqa: F811
    await label_echo(site)
    echo = await enqueue(site, "reports.echo", note="hi")
    cleanup = await enqueue(site, "system.cleanup", days=1)
    await site.app.client.aschedule_recurring("echo.hourly", "0 * * * *", "reports.echo", {})
    async with browser_page() as (page, problems):
        await log_in(page, site, "admin", "/jobs")
        echo_row = page.locator(f'tr[data-job-id="{echo}"] td.type')
        await echo_row.locator(".type-name").wait_for()
        assert " ".join((await echo_row.text_content() or "").split()) == (
            "🔊 Echo a note reports.echo"
        )
        cleanup_row = page.locator(f'tr[data-job-id="{cleanup}"] td.type')
        assert (await cleanup_row.text_content() or "").strip() == "system.cleanup"

        await page.goto(f"{site.url}/jobs/{echo}")
        heading = page.locator("h1 .type-name")
        await heading.wait_for()
        assert "🔊 Echo a note" in (await heading.text_content() or "")

        await page.goto(f"{site.url}/recurring")
        row = page.locator('tr[data-recurring="echo.hourly"] .type-name')
        await row.wait_for()
        assert "Echo a note" in (await row.text_content() or "")
        problems.check()
