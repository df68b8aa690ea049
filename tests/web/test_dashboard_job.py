"""The job page in Chromium: a running report followed live (its progress bar rises, its output
grows, its status ends succeeded and the attempts and result load), a running system job
cancelled from its page, a dead one retried, a system job run again, a user job deleted."""

from __future__ import annotations

import asyncio
import json

import pytest

from jobworker import JobStatus

from .dashboard_jobs_support import enqueue, until_status
from .dashboard_support import GATES, Site, browser_page, log_in, pg_url, site  # noqa: F401

pytestmark = pytest.mark.slow

PROGRESS = ".live-tail progress"
OUTPUT = ".live-tail pre.output"


async def test_a_running_report_is_followed_live(site: Site) -> None:  # noqa: F811
    GATES["report"] = gate = asyncio.Event()
    async with browser_page() as (page, problems):
        await log_in(page, site, "admin", "/jobs")
        job_id = await enqueue(site, "reports.build", rows=40, pause=0.15, gate="report")
        await until_status(site, job_id, JobStatus.RUNNING)
        await page.goto(f"{site.url}/jobs/{job_id}")
        await page.locator(".live-tail[data-connection='live']").wait_for()
        await page.wait_for_function(
            f"() => (document.querySelector('{PROGRESS}') || {{}}).value >= 3"
        )
        value = await page.locator(PROGRESS).evaluate("bar => bar.value")
        length = await page.locator(OUTPUT).evaluate("pre => pre.textContent.length")
        assert await page.locator(PROGRESS).get_attribute("max") == "40"
        await page.wait_for_function(
            f"""([value, length]) =>
                document.querySelector('{PROGRESS}').value > value &&
                document.querySelector('{OUTPUT}').textContent.length > length""",
            arg=[value, length],
        )
        assert "row 1 written\n" in (await page.locator(OUTPUT).text_content() or "")
        await page.wait_for_function(f"() => document.querySelector('{PROGRESS}').value >= 12")
        await page.locator("ol.log .message", has_text="10 rows so far").wait_for()
        rows = page.locator(".live-tail [data-metric='rows'] dd")
        assert int(await rows.text_content() or "0") >= 12
        text = await page.locator(".live-tail .progress-text").text_content() or ""
        assert " / 40 · row " in text
        await page.screenshot(path=site.screenshots / "job-running.png", full_page=True)
        assert await page.locator("[data-job-status]").get_attribute("data-job-status") == (
            "running"
        )

        gate.set()
        await page.locator("[data-job-status='succeeded']").wait_for()
        await page.locator(".live-tail[data-connection='ended']").wait_for()
        assert await page.locator(PROGRESS).evaluate("bar => bar.value") == 40
        output = await page.locator(OUTPUT).text_content() or ""
        assert output.endswith("row 40 written\n")
        # The job's data is read again: its attempt, its result, its last events.
        await page.locator(".attempt[data-outcome='succeeded']").wait_for()
        result = page.get_by_label("Result", exact=True)
        assert json.loads(await result.text_content() or "") == 40
        await page.locator("ol.timeline li[data-kind='result']").wait_for()
        problems.check()


async def test_cancel_a_running_system_job_from_its_page(site: Site) -> None:  # noqa: F811
    job_id = await enqueue(site, "system.sweep", days=3)
    await until_status(site, job_id, JobStatus.RUNNING)
    async with browser_page() as (page, problems):
        await log_in(page, site, "admin", f"/jobs/{job_id}")
        await page.locator("[data-job-status='running']").wait_for()
        actions = page.get_by_role("group", name="Actions")
        assert await actions.locator("[data-action='delete']").count() == 0  # it runs
        assert await actions.locator("[data-action='retry']").count() == 0  # not dead
        await actions.get_by_role("button", name="Cancel").click()
        await page.get_by_role("button", name="Yes, cancel it").click()
        await page.get_by_role("status").filter(has_text="cancel requested").wait_for()
        await page.locator("[data-job-status='cancelled']").wait_for()
        await page.locator(".attempt[data-outcome='cancelled']").wait_for()
        job = await until_status(site, job_id, JobStatus.CANCELLED, timeout=5)
        assert job.status is JobStatus.CANCELLED
        # Finished: nothing to cancel any more, and now it may be deleted.
        await actions.locator("[data-action='delete']").wait_for()
        assert await actions.locator("[data-action='cancel']").count() == 0
        problems.check()


async def test_retry_a_dead_system_job_from_its_page(site: Site) -> None:  # noqa: F811
    job_id = await enqueue(site, "system.broken")
    await until_status(site, job_id, JobStatus.DEAD)
    async with browser_page() as (page, problems):
        await log_in(page, site, "admin", f"/jobs/{job_id}")
        attempt = page.locator(".attempt[data-attempt='1']")
        await attempt.wait_for()
        assert await attempt.get_attribute("data-outcome") == "dead"
        assert "the disk is full" in (await attempt.locator("pre.error-text").text_content() or "")
        traceback = attempt.locator("pre.traceback")
        assert "PermanentJobError" in (await traceback.text_content() or "")
        assert await traceback.is_visible()
        assert "the disk is full" in (
            await page.get_by_label("Error", exact=True).text_content() or ""
        )
        await page.screenshot(path=site.screenshots / "job-dead.png", full_page=True)

        await page.get_by_role("button", name="Retry").click()
        await page.get_by_role("button", name="Yes, retry it").click()
        await page.get_by_role("status").filter(has_text="Queued again").wait_for()
        # It ran again (and failed again: it always does): a second attempt is shown. A worker
        # must claim and run it first: up to 30 s on a loaded machine (15 s once ran out).
        second = page.locator(".attempt[data-attempt='2'][data-outcome='dead']")
        await second.wait_for(timeout=30_000)
        job = await until_status(site, job_id, JobStatus.DEAD)
        assert job.attempt == 2
        problems.check()


async def test_run_a_system_job_again_from_its_page(site: Site) -> None:  # noqa: F811
    job_id = await enqueue(site, "system.cleanup", days=12)
    await until_status(site, job_id, JobStatus.SUCCEEDED)
    async with browser_page() as (page, problems):
        await log_in(page, site, "admin", f"/jobs/{job_id}")
        await page.get_by_role("button", name="Run again").click()
        await page.get_by_role("button", name="Yes, run again").click()
        link = page.get_by_role("status").get_by_role("link")
        await link.wait_for()
        new_id = await link.text_content() or ""
        assert new_id and new_id != str(job_id)
        await link.click()
        await page.wait_for_url(f"**/jobs-ui/jobs/{new_id}")
        await page.locator("[data-job-status='succeeded']").wait_for()
        arguments = json.loads(
            await page.get_by_label("Arguments", exact=True).text_content() or ""
        )
        assert arguments == {"days": 12}
        assert await site.app.client.aresult(new_id) == 12
        problems.check()


async def test_a_user_job_may_only_be_deleted(site: Site) -> None:  # noqa: F811
    job_id = await enqueue(site, "reports.echo", note="hello")
    await until_status(site, job_id, JobStatus.SUCCEEDED)
    async with browser_page() as (page, problems):
        await log_in(page, site, "admin", f"/jobs/{job_id}")
        actions = page.get_by_role("group", name="Actions")
        await actions.wait_for()
        assert await actions.locator("[data-action]").evaluate_all(
            "buttons => buttons.map(b => b.dataset.action)"
        ) == ["delete"]
        assert "read-only" in (await actions.text_content() or "")
        await actions.get_by_role("button", name="Delete").click()
        await page.get_by_role("button", name="Yes, delete it").click()
        await page.wait_for_url("**/jobs-ui/jobs")
        assert await site.app.client.aget(job_id) is None
        problems.check()


async def test_the_timeline_pages_with_load_more(site: Site) -> None:  # noqa: F811
    job_id = await enqueue(site, "reports.build", rows=130, pause=0)
    await until_status(site, job_id, JobStatus.SUCCEEDED)
    kept = await site.app.client.aevents(job_id, 0, 1000)
    assert len(kept) > 100  # lifecycle, 130 progress steps, result
    async with browser_page() as (page, problems):
        await log_in(page, site, "admin", f"/jobs/{job_id}")
        timeline = page.get_by_role("region", name="Timeline")
        entries = timeline.locator("ol.timeline li")
        await entries.nth(99).wait_for()
        assert await entries.count() == 100
        assert await entries.first.get_attribute("data-seq") == str(kept[0].seq)
        # The newest loaded is in view: the box is scrolled to its end.
        at_end = (
            "box => box.scrollTop > 0 && box.scrollTop + box.clientHeight >= box.scrollHeight - 2"
        )
        assert await timeline.locator("ol.timeline").evaluate(at_end)
        await timeline.get_by_role("button", name="Load newer events").click()
        await entries.nth(len(kept) - 1).wait_for()
        assert await entries.count() == len(kept)
        seqs = await entries.evaluate_all("items => items.map(li => Number(li.dataset.seq))")
        assert seqs == [event.seq for event in kept]
        last = entries.last
        assert await last.get_attribute("data-kind") == "lifecycle"
        assert "succeeded" in (await last.text_content() or "")
        assert await timeline.get_by_role("button", name="Load newer events").count() == 0
        problems.check()
