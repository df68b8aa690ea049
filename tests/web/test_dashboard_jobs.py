"""The jobs list in Chromium: filters by status and by type (every row shown matches, the URL holds
the filter, a reload and back/forward keep it), keyset pages over more than one page, a bulk
action on a selection with its summary, and the list on a phone."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import pytest

from jobworker import JobStatus

from .dashboard_jobs_support import enqueue, rows, until_status
from .dashboard_support import PHONE, Site, browser_page, log_in, pg_url, site  # noqa: F401

pytestmark = pytest.mark.slow

FIRST_ROW = "table.jobs tbody tr"


def query(page: object) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)  # type: ignore[attr-defined]


async def some_jobs(site: Site) -> dict[str, list[str]]:  # noqa: F811
    """Finished jobs of every kind: echoes succeeded, broken ones dead, cleanups succeeded."""
    made: dict[str, list[str]] = {"reports.echo": [], "system.broken": [], "system.cleanup": []}
    for n in range(4):
        made["reports.echo"].append(str(await enqueue(site, "reports.echo", note=f"note {n}")))
    for _ in range(2):
        made["system.broken"].append(str(await enqueue(site, "system.broken")))
    made["system.cleanup"].append(str(await enqueue(site, "system.cleanup", days=1)))
    for job_type, ids in made.items():
        final = JobStatus.DEAD if job_type == "system.broken" else JobStatus.SUCCEEDED
        for job_id in ids:
            await until_status(site, job_id, final)
    return made


async def test_filter_by_status_and_type_kept_in_the_url(site: Site) -> None:  # noqa: F811
    made = await some_jobs(site)
    async with browser_page() as (page, problems):
        await log_in(page, site, "admin", "/jobs")
        started = time.perf_counter()
        await page.goto(site.url + "/jobs")
        await page.locator(FIRST_ROW).first.wait_for()
        elapsed = 1000 * (time.perf_counter() - started)
        print(f"jobs list interactive (goto -> first row visible) in {elapsed:.0f} ms")
        assert len(await rows(page)) == 7

        await page.get_by_label("Status").select_option("dead")
        await page.wait_for_url("**/jobs?status=dead")
        await page.wait_for_function(
            "() => document.querySelectorAll('table.jobs tbody tr').length === 2"
        )
        shown = await rows(page)
        assert {row["id"] for row in shown} == set(made["system.broken"])
        assert all(row["status"] == "dead" for row in shown)

        await page.get_by_label("Status").select_option("succeeded")
        await page.get_by_label("Job type").fill("reports.echo")
        await page.wait_for_url("**/jobs?status=succeeded&type=reports.echo")
        await page.wait_for_function(
            "() => document.querySelectorAll('table.jobs tbody tr').length === 4"
        )
        shown = await rows(page)
        assert [row["id"] for row in shown] == made["reports.echo"][::-1]  # newest first
        assert all(r["status"] == "succeeded" and r["type"] == "reports.echo" for r in shown)
        assert query(page) == {"status": ["succeeded"], "type": ["reports.echo"]}

        await page.reload()  # the URL is the filter
        await page.locator(FIRST_ROW).first.wait_for()
        assert [row["id"] for row in await rows(page)] == made["reports.echo"][::-1]
        assert await page.get_by_label("Job type").input_value() == "reports.echo"
        assert await page.get_by_label("Status").input_value() == "succeeded"

        await page.go_back()  # typing replaced the URL: back is the status chosen before
        await page.wait_for_url("**/jobs?status=dead")
        await page.wait_for_function(
            "() => document.querySelectorAll('table.jobs tbody tr').length === 2"
        )
        assert await page.get_by_label("Job type").input_value() == ""
        assert await page.get_by_label("Status").input_value() == "dead"
        await page.go_forward()
        await page.wait_for_url("**/jobs?status=succeeded&type=reports.echo")
        await page.wait_for_function(
            "() => document.querySelectorAll('table.jobs tbody tr').length === 4"
        )
        assert await page.get_by_label("Job type").input_value() == "reports.echo"

        await page.goto(site.url + "/jobs?kind=system")
        await page.wait_for_function(
            "() => document.querySelectorAll('table.jobs tbody tr').length === 3"
        )
        assert {row["kind"] for row in await rows(page)} == {"system"}
        await page.screenshot(path=site.screenshots / "jobs.png")
        # Kind and a search in the type, combined
        await page.goto(site.url + "/jobs?kind=system&search=CLEAN")
        await page.wait_for_function(
            "() => document.querySelectorAll('table.jobs tbody tr').length === 1"
        )
        assert [row["id"] for row in await rows(page)] == made["system.cleanup"]
        problems.check()


async def test_keyset_pages_older_and_newest(site: Site) -> None:  # noqa: F811
    await site.app.client.apause_queue("maintenance")  # they stay queued: the list is stable
    made = [str(await enqueue(site, "system.cleanup", days=n)) for n in range(23)]
    newest_first = made[::-1]
    async with browser_page() as (page, problems):
        await log_in(page, site, "admin", "/jobs?type=system.cleanup&limit=10")
        await page.locator(FIRST_ROW).first.wait_for()
        pages = [[row["id"] for row in await rows(page)]]
        assert await page.get_by_role("button", name="Newest").is_disabled()
        older = page.get_by_role("button", name="Older →")
        while await older.is_enabled():
            last = pages[-1][-1]
            await older.click()
            await page.wait_for_url(f"**before={last}**")
            await page.wait_for_function(
                "last => { const first = document.querySelector('table.jobs tbody tr');"
                " return !first || first.dataset.jobId !== last && !document.querySelector("
                "`tr[data-job-id='${last}']`) }",
                arg=last,
            )
            await page.locator(FIRST_ROW).first.wait_for()
            pages.append([row["id"] for row in await rows(page)])
            assert query(page)["type"] == ["system.cleanup"] and query(page)["limit"] == ["10"]
            if len(pages) == 2:  # a page of its own: reloaded, it is the same page
                await page.reload()
                await page.locator(FIRST_ROW).first.wait_for()
                assert [row["id"] for row in await rows(page)] == pages[-1]
        assert [len(p) for p in pages] == [10, 10, 3]
        assert [job_id for p in pages for job_id in p] == newest_first
        await page.get_by_role("button", name="Newest").click()
        await page.wait_for_function(
            "first => document.querySelector('table.jobs tbody tr').dataset.jobId === first",
            arg=newest_first[0],
        )
        assert "before" not in query(page)
        await page.go_back()  # paging pushes: back is the last page again
        await page.wait_for_function(
            "first => document.querySelector('table.jobs tbody tr').dataset.jobId === first",
            arg=pages[-1][0],
        )
        problems.check()


async def test_a_bulk_action_on_a_selection(site: Site) -> None:  # noqa: F811
    await site.app.client.apause_queue("maintenance")
    waiting = [str(await enqueue(site, "system.cleanup", days=n)) for n in range(3)]
    done = str(await enqueue(site, "reports.echo", note="done"))
    await until_status(site, done, JobStatus.SUCCEEDED)
    async with browser_page() as (page, problems):
        await log_in(page, site, "admin", "/jobs")
        await page.locator(FIRST_ROW).first.wait_for()
        bulk = page.get_by_role("group", name="Act on the selected jobs")
        cancel, retry, delete = (
            bulk.locator(f"[data-action='{name}']") for name in ("cancel", "retry", "delete")
        )
        assert await cancel.is_disabled() and await delete.is_disabled()  # nothing selected

        await page.get_by_label("Select every job on this page").check()
        assert await bulk.locator("[data-selected]").get_attribute("data-selected") == "4"
        # Cancel applies to the 3 waiting system jobs, retry to none, delete to all 4.
        assert (await cancel.text_content(), await retry.text_content()) == (
            "Cancel (3)",
            "Retry (0)",
        )
        assert await delete.text_content() == "Delete (4)" and await retry.is_disabled()
        await cancel.click()
        await bulk.get_by_role("button", name="No").click()  # asked, and nothing was done
        assert (await site.app.client.aget(waiting[0])).status is JobStatus.QUEUED  # type: ignore[union-attr]
        await cancel.click()
        await bulk.get_by_role("button", name="Yes, cancel 3").click()
        outcome = page.locator("[data-outcome]")
        await outcome.wait_for()
        assert "3 cancelled" in (await outcome.text_content() or "")
        for job_id in waiting:
            assert (await site.app.client.aget(job_id)).status is JobStatus.CANCELLED  # type: ignore[union-attr]
        await page.wait_for_function(
            "() => document.querySelectorAll('tr[data-status=\"cancelled\"]').length === 3"
        )

        # A job deleted elsewhere meanwhile is refused, with the API's message.
        await page.get_by_label(f"Select job {waiting[0]}").check()
        await page.get_by_label(f"Select job {done}").check()
        await site.app.client.adelete(waiting[0])
        await delete.click()
        await bulk.get_by_role("button", name="Yes, delete 2").click()
        await page.locator("[data-outcome].error").wait_for()
        text = await outcome.text_content() or ""
        assert "1 deleted" in text and "1 refused: no job" in text and waiting[0] in text
        await page.wait_for_function(
            "() => document.querySelectorAll('table.jobs tbody tr').length === 2"
        )
        assert await site.app.client.aget(done) is None
        problems.check()


async def test_the_list_on_a_phone(site: Site) -> None:  # noqa: F811
    for n in range(3):
        await enqueue(site, "reports.echo", note=f"phone {n}")
    broken = await enqueue(site, "system.broken")
    await until_status(site, broken, JobStatus.DEAD)
    async with browser_page(PHONE) as (page, problems):
        await log_in(page, site, "admin", "/jobs")
        await page.locator(FIRST_ROW).nth(3).wait_for()
        wide = await page.evaluate("document.documentElement.scrollWidth > innerWidth")
        assert not wide  # rows are cards: nothing wider than the phone
        await page.screenshot(path=site.screenshots / "jobs-phone.png")
        await page.locator(FIRST_ROW).first.get_by_role("link").click()
        await page.wait_for_url(f"**/jobs-ui/jobs/{broken}")
        await page.locator("[data-job-status='dead']").wait_for()
        wide = await page.evaluate("document.documentElement.scrollWidth > innerWidth")
        assert not wide
        problems.check()


async def test_a_scan_limited_search_goes_on_older(
    site: Site,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from jobworker.web.admin import handlers

    monkeypatch.setattr(handlers, "SCAN_LIMIT", 10)  # rows a page may read for `search`
    await site.app.client.apause_queue("reports")
    await site.app.client.apause_queue("maintenance")
    echoes = [str(await enqueue(site, "reports.echo", note=f"old {n}")) for n in range(3)]
    for n in range(25):
        await enqueue(site, "system.cleanup", days=n)
    async with browser_page() as (page, problems):
        # A page of 5: the budget is at least a page (a listing of every row fills its page).
        await log_in(page, site, "admin", "/jobs?search=echo&limit=5")
        notice = page.locator("[data-scan-limited]")
        await notice.wait_for()
        assert await rows(page) == []  # the 10 newest rows scanned hold no echo
        assert "older" in (await notice.text_content() or "")
        assert await notice.locator("time[datetime]").count() == 1  # how far back it looked
        older = notice.get_by_role("button", name="Search older")
        for _ in range(3):  # 28 rows, 10 a page: the echoes are in the third
            if not await notice.count():
                break
            scanned_to = await older.get_attribute("data-next")
            await older.click()
            await page.wait_for_url(f"**before={scanned_to}**")
            assert query(page)["search"] == ["echo"] and query(page)["limit"] == ["5"]
            await page.wait_for_function(
                """edge => { const more = document.querySelector('[data-scan-limited] button');
                    return !more || more.dataset.next !== edge; }""",
                arg=scanned_to,
            )
        await page.wait_for_function(
            "() => document.querySelectorAll('table.jobs tbody tr').length === 3"
        )
        assert [row["id"] for row in await rows(page)] == echoes[::-1]
        problems.check()
