"""The dashboard in Firefox (Debian's Firefox ESR over WebDriver BiDi, see tests/web/firefox.py):
the login page renders, logging in shows the role, each section opens from the navigation
without reloading the page, at desktop and at phone width (nothing wider than the phone), and
the page logs no console error, script error or policy refusal. It checks headings, not what
the sections show: their contents are other tests' business."""

from __future__ import annotations

import json
import time

import pytest

from .admin_support import ADMIN_PASSWORD
from .dashboard_support import DESKTOP, PHONE, Site, pg_url, site  # noqa: F401
from .firefox import FirefoxPage, firefox_page

pytestmark = pytest.mark.slow

# The navigation's links, in the order the test follows them, and the paths they open.
SECTIONS = [
    ("Jobs", "/jobs"),
    ("Queues", "/queues"),
    ("Recurring", "/recurring"),
    ("Overview", "/"),
]

FILL_IN = """(username, password) => {
    for (const [name, value] of [["username", username], ["password", password]]) {
        const input = document.querySelector(`input[name="${name}"]`);
        input.value = value;
        input.dispatchEvent(new Event("input", { bubbles: true }));
    }
}"""

CLICK = """(selector, text) => {
    const found = [...document.querySelectorAll(selector)].find(
        (element) => element.textContent.trim() === text,
    );
    if (!found) throw new Error(`nothing like ${selector} says ${text}`);
    found.click();
}"""


async def open_section(page: FirefoxPage, dashboard: str, label: str, path: str) -> None:
    """Click the section's link and wait for its heading, in the same document."""
    await page.call(CLICK, 'nav[aria-label="Sections"] a', label)
    where = json.dumps(dashboard + path)
    heading = await page.wait_for(
        f"location.href === {where} && document.querySelector('#main h1')?.textContent.trim()"
    )
    assert heading.startswith(label)
    current = await page.evaluate("document.querySelector('nav a[aria-current=page]').textContent")
    assert current.strip() == label
    assert await page.evaluate("window.sameDocument === true")  # a pushState link, no reload


async def test_the_dashboard_in_firefox(site: Site) -> None:  # noqa: F811
    started = time.perf_counter()
    async with firefox_page(DESKTOP["width"], DESKTOP["height"]) as page:
        launched = time.perf_counter()
        await page.goto(site.url + "/")
        title = await page.wait_for("document.querySelector('#login-title')?.textContent")
        assert title == "jobworker"
        assert await page.evaluate("document.querySelectorAll('form.card input').length") == 2

        await page.call(FILL_IN, "admin", ADMIN_PASSWORD)
        # A command of its own: the page draws the typed values before the button is clicked.
        await page.call(CLICK, "button", "Log in")
        role = await page.wait_for("document.querySelector('.badge.role')?.textContent.trim()")
        assert role == "admin"
        await page.evaluate("window.sameDocument = true")

        for label, path in SECTIONS:
            await open_section(page, site.url, label, path)
        await page.screenshot(site.screenshots / "firefox-overview.png")

        await page.set_viewport(PHONE["width"], PHONE["height"])
        assert await page.evaluate("innerWidth") == PHONE["width"]
        for label, path in SECTIONS:
            await open_section(page, site.url, label, path)
            wide = await page.evaluate("document.documentElement.scrollWidth > innerWidth")
            assert not wide, f"{label} is wider than a phone"
        await page.screenshot(site.screenshots / "firefox-phone.png")
        page.check()
        version = await page.evaluate("navigator.userAgent")
    ended = time.perf_counter()
    print(f"{version}: started in {launched - started:.1f} s, walked in {ended - launched:.1f} s")
