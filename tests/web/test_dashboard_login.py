"""Logging in to the dashboard in Chromium: a wrong password is refused and says so, a right
one shows the role, logging out ends the session, and the page runs under the policy with no
script error."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from .dashboard_support import (  # noqa: F401
    PHONE,
    Site,
    browser_page,
    log_in,
    pg_url,
    serving_dashboard,
    site,
)

pytestmark = pytest.mark.slow


async def test_log_in_see_the_role_and_log_out(site: Site) -> None:  # noqa: F811
    async with browser_page() as (page, problems):
        started = time.perf_counter()
        await page.goto(site.url + "/")
        await page.get_by_label("Username").wait_for()
        print(f"login page interactive in {1000 * (time.perf_counter() - started):.0f} ms")
        await page.screenshot(path=site.screenshots / "login.png")

        await page.get_by_label("Username").fill("admin")
        await page.get_by_label("Password").fill("not the password")
        await page.get_by_role("button", name="Log in").click()
        await page.get_by_role("alert").filter(has_text="Wrong username or password").wait_for()

        await page.get_by_label("Password").fill("correct horse battery staple")
        await page.get_by_role("button", name="Log in").click()
        role = page.locator(".badge.role")
        await role.wait_for()
        assert await role.text_content() == "admin"

        await page.reload()  # the session cookie holds
        await page.locator(".badge.role").wait_for()

        await page.get_by_role("button", name="Log out").click()
        await page.get_by_label("Username").wait_for()
        await page.reload()
        await page.get_by_label("Username").wait_for()  # logged out for good
        problems.check()


async def test_a_read_only_login_shows_its_role(site: Site) -> None:  # noqa: F811
    async with browser_page() as (page, problems):
        await log_in(page, site, "readonly")
        assert await page.locator(".badge.role").text_content() == "readonly"
        problems.check()


async def test_a_link_opens_after_logging_in(site: Site) -> None:  # noqa: F811
    async with browser_page(PHONE) as (page, problems):
        await log_in(page, site, "admin", "/queues")
        assert page.url.endswith("/jobs-ui/queues")
        wide = await page.evaluate("document.documentElement.scrollWidth > innerWidth")
        assert not wide  # nothing wider than a phone
        problems.check()


async def test_the_page_works_under_any_prefix(pg_url: tuple[str, str], tmp_path: Path) -> None:  # noqa: F811
    """Behind a proxy the web tail is served under the proxy's path: the page learns its prefix
    from the server, calls the API under it and keeps its links under it."""
    url, schema = pg_url
    async with (
        serving_dashboard(url, schema, tmp_path, prefix="/ops/jobs") as served,
        browser_page() as (page, problems),
    ):
        await log_in(page, served, "admin", "/queues")
        assert page.url == f"{served.base}/ops/jobs/queues"
        await page.get_by_role("link", name="Jobs", exact=True).click()
        await page.wait_for_url(f"{served.base}/ops/jobs/jobs")
        problems.check()


async def test_failed_logins_are_throttled_and_the_page_says_so(site: Site) -> None:  # noqa: F811
    from playwright.async_api import expect

    async with browser_page() as (page, problems):
        await page.goto(site.url + "/")
        await page.get_by_label("Username").fill("admin")
        refused = page.get_by_role("alert").filter(has_text="Too many failed logins")
        for _ in range(10):
            await page.get_by_label("Password").fill("wrong")
            await page.get_by_role("button", name="Log in").click()
            await page.get_by_role("alert").wait_for()
            if await refused.count():
                break
        await refused.wait_for()
        # The right password is refused too while the window lasts.
        await page.get_by_label("Password").fill("correct horse battery staple")
        await page.get_by_role("button", name="Log in").click()
        await expect(page.get_by_label("Password")).to_have_value("")  # answered: it failed
        await refused.wait_for()
        assert await page.locator(".badge.role").count() == 0
        problems.check()
