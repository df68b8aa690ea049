"""What the jobs list and the job page must never do: run markup a job was given (its arguments,
log lines, streamed output, result and error are shown as the exact text, no element made of
them, no script run), or offer a read-only session a way to change anything (no mutating
control, and a mutating request from the page is refused by the API)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from jobworker import JobStatus

from .dashboard_jobs_support import enqueue, rows, until_status
from .dashboard_support import Site, browser_page, log_in, pg_url, site  # noqa: F401

pytestmark = pytest.mark.slow

MARKUP = "<img src=x onerror=alert(1)>"

# Counts every <img> element added to the document, even one removed again at once.
COUNT_IMAGES = """
window.__images = 0;
new MutationObserver((changes) => {
  for (const change of changes) for (const node of change.addedNodes) {
    if (node.nodeType === 1 && (node.tagName === "IMG" || node.querySelector("img"))) {
      window.__images++;
    }
  }
}).observe(document, { childList: true, subtree: true });
"""


async def no_markup_ran(page: Any, dialogs: list[str]) -> None:
    assert dialogs == []
    assert await page.locator("#main img").count() == 0
    assert await page.evaluate("window.__images") == 0


async def test_markup_from_a_job_is_shown_as_text(site: Site) -> None:  # noqa: F811
    await site.app.client.apause_queue("reports")
    await site.app.client.apause_queue("maintenance")
    echo = await enqueue(site, "reports.echo", note=MARKUP)
    refused = await enqueue(site, "system.cleanup", days=1)
    await site.app.client.acancel(refused, MARKUP)
    cancelled = await until_status(site, refused, JobStatus.CANCELLED)
    assert cancelled.error is not None and MARKUP in cancelled.error
    async with browser_page() as (page, problems):
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: dialogs.append(dialog.message))
        await page.add_init_script(COUNT_IMAGES)
        await log_in(page, site, "admin", "/jobs")

        # The list: the error column holds the text.
        await page.locator(f"tr[data-job-id='{refused}']").wait_for()
        snippet = page.locator(f"tr[data-job-id='{refused}'] td.error-snippet")
        assert MARKUP in (await snippet.text_content() or "")
        await no_markup_ran(page, dialogs)

        # The cancelled job's page: its error, and the timeline's lifecycle event.
        await page.goto(f"{site.url}/jobs/{refused}")
        error = page.get_by_label("Error", exact=True)
        await error.wait_for()
        assert MARKUP in (await error.text_content() or "")
        await page.locator("ol.timeline li[data-kind='lifecycle']", has_text=MARKUP).wait_for()
        await no_markup_ran(page, dialogs)

        # The echo's page, open while it runs: arguments, log, output, result.
        await page.goto(f"{site.url}/jobs/{echo}")
        arguments = page.get_by_label("Arguments", exact=True)
        await arguments.wait_for()
        assert json.loads(await arguments.text_content() or "") == {"note": MARKUP}
        await page.locator(".live-tail[data-connection='live']").wait_for()
        await site.app.client.aresume_queue("reports")
        await page.locator("[data-job-status='succeeded']").wait_for()
        message = page.locator("ol.log .message")
        await message.wait_for()
        assert await message.text_content() == MARKUP
        assert await page.get_by_label("Output", exact=True).text_content() == MARKUP
        result = page.get_by_label("Result", exact=True)
        await result.wait_for()
        assert json.loads(await result.text_content() or "") == MARKUP
        await page.locator("ol.timeline li[data-kind='result']", has_text=MARKUP).wait_for()
        await page.screenshot(path=site.screenshots / "xss.png", full_page=True)
        await no_markup_ran(page, dialogs)
        problems.check()


async def test_a_read_only_session_sees_no_control_and_is_refused(site: Site) -> None:  # noqa: F811
    dead = await enqueue(site, "system.broken")
    await until_status(site, dead, JobStatus.DEAD)
    async with browser_page() as (page, problems):
        await log_in(page, site, "readonly", "/jobs")
        await page.locator("table.jobs tbody tr").first.wait_for()
        assert [row["id"] for row in await rows(page)] == [str(dead)]
        assert await page.locator("table.jobs input[type='checkbox']").count() == 0
        assert await page.get_by_role("group", name="Act on the selected jobs").count() == 0
        assert await page.locator("[data-action]").count() == 0

        await page.goto(f"{site.url}/jobs/{dead}")
        await page.locator(".attempt[data-outcome='dead']").wait_for()
        await page.locator(".readonly-note").wait_for()
        assert await page.locator("[data-action]").count() == 0
        assert await page.get_by_role("group", name="Actions").count() == 0
        labels = await page.locator("#main button").evaluate_all("bs => bs.map(b => b.textContent)")
        assert labels == []  # no button at all on a finished job's page for a reader
        await page.screenshot(path=site.screenshots / "readonly-job.png", full_page=True)

        # The page's own session, with its CSRF token, still may not change anything.
        answer = await page.evaluate(
            """async (id) => {
                const base = document.querySelector('meta[name="jobworker-base"]').content;
                const session = await (await fetch(`${base}/api/session`)).json();
                const response = await fetch(`${base}/api/jobs/${id}/retry`, {
                    method: "POST", headers: {"X-CSRF-Token": session.csrfToken}});
                return [session.role, response.status, (await response.json()).error];
            }""",
            str(dead),
        )
        assert answer == ["readonly", 403, "this session is read-only"]
        job = await site.app.client.aget(dead)
        assert job is not None and job.status is JobStatus.DEAD and job.attempt == 1
        problems.check()
