"""The example apps: examples/reports_app.py (Starlette) and examples/fastapi_reports.py, over
the ASGI app, and the reference's browser snippet in headless Chromium against the Starlette one
served by uvicorn."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import msgspec
import pytest

from jobworker import App
from jobworker.testing import adrain

from ..conftest import FAST, ROOT
from .server import serving
from .support import job_events, parse_sse, running_worker

EXAMPLES = ROOT / "examples"
CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps calling outside hosts.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def examples(monkeypatch: pytest.MonkeyPatch) -> tuple[ModuleType, ModuleType]:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    reports = importlib.import_module("reports_app")
    fastapi_reports = importlib.import_module("fastapi_reports")
    return reports, fastapi_reports


@pytest.fixture
async def jobs(tmp_path: Path, examples: tuple[ModuleType, ModuleType]) -> AsyncIterator[App]:
    reports, _ = examples
    app = App(f"sqlite:///{tmp_path / 'jobs.db'}", registry=reports.registry, bind=False, **FAST)
    yield app
    await app.aclose()


def client_of(web: Any, user: str | None = "ada") -> httpx.AsyncClient:
    cookies = {"user": user} if user else None
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=web), base_url="http://test", cookies=cookies
    )


async def check_the_202_pattern(web: Any, jobs: App) -> None:
    async with client_of(web) as ada, client_of(web, "bob") as bob, client_of(web, None) as nobody:
        created = await ada.post("/reports", json={"title": "<script>alert(1)</script>", "rows": 3})
        assert created.status_code == 202
        job_id = created.json()["jobId"]
        assert created.headers["location"] == f"/reports/{job_id}"
        await adrain(jobs)
        job = await ada.get(created.headers["location"])
        assert job.status_code == 200 and job.headers["content-type"] == "application/json"
        assert job.json()["status"] == "succeeded"
        assert msgspec.json.decode(job.json()["argsJson"])["title"] == "<script>alert(1)</script>"
        for other in (bob, nobody):
            assert (await other.get(f"/reports/{job_id}")).status_code == 404
            assert (await other.get(f"/reports/{job_id}/stream")).status_code == 404
        stream = await ada.get(f"/reports/{job_id}/stream")
        kinds = {event.event for event in job_events(parse_sse(stream.text))}
        assert kinds == {"lifecycle", "progress", "log", "chunk", "metric", "result"}
        history = (await ada.get(f"/reports/{job_id}/events?limit=2")).json()
        assert len(history) == 2 and history[0]["seq"] == 1  # kept kinds only
        assert {event["kind"] for event in history} <= {"lifecycle", "progress", "result"}
        assert (await nobody.post("/reports", json={"title": "x"})).status_code == 401
        bad = await ada.post("/reports", json={"title": "x", "rows": "many"})
        assert bad.status_code in (400, 422)


async def test_the_starlette_example(examples: tuple[ModuleType, ModuleType], jobs: App) -> None:
    reports, _ = examples
    web = reports.build_app(jobs)
    await check_the_202_pattern(web, jobs)
    async with client_of(web) as ada:
        form = await ada.post("/reports", content=b"title=x")
        assert form.status_code == 415  # a cross-site form cannot send JSON
        page = await ada.get("/")
        assert "new EventSource(`/reports/${jobId}/stream`)" in page.text


async def test_the_fastapi_example(examples: tuple[ModuleType, ModuleType], jobs: App) -> None:
    _, fastapi_reports = examples
    await check_the_202_pattern(fastapi_reports.build_api(jobs), jobs)


def debian_browser(path: str, package: str) -> str:
    """The browser at `path`, installed from Debian's `package` when it is missing (or the test
    is skipped, saying why)."""
    if not Path(path).exists() and shutil.which("apt-get"):
        for command in (
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", package],
        ):
            subprocess.run(command, capture_output=True, check=False, timeout=600)
    if not Path(path).exists():
        pytest.skip(f"no browser at {path}, and apt-get could not install {package}")
    return path


def chromium() -> str:
    """Debian's Chromium (see `debian_browser`)."""
    return debian_browser(CHROMIUM, "chromium")


@pytest.mark.slow
async def test_the_reference_browser_snippet_in_chromium(
    examples: tuple[ModuleType, ModuleType], jobs: App
) -> None:
    from playwright.async_api import async_playwright

    executable = chromium()
    reports, _ = examples
    web = reports.build_app(jobs)
    async with serving(web) as base, running_worker(jobs), async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context()
            await context.add_cookies([{"name": "user", "value": "ada", "url": base}])
            page = await context.new_page()
            console: list[str] = []
            errors: list[str] = []
            page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
            page.on("pageerror", lambda error: errors.append(str(error)))
            await page.goto(f"{base}/")
            await page.click("#start")
            await page.wait_for_function(
                "document.getElementById('result').textContent !== ''", timeout=30_000
            )
            result = msgspec.json.decode(await page.text_content("#result") or "")
            assert result == {"owner": "ada", "title": "Quarterly", "rows": 20}
            assert await page.evaluate("document.querySelector('progress').value") == 1.0
            assert await page.text_content("#label") == "20 of 20 rows"
            assert await page.text_content('[data-metric="rows_done"]') == "20"
            output = await page.text_content("#output") or ""
            assert output.splitlines() == [f"Quarterly: row {n}" for n in range(1, 21)]
            assert "running" in await page.evaluate("statuses")
            assert "info: [info] building report" in " ".join(console)
            assert any(line.startswith("warning: [warn] report built") for line in console)
            assert errors == []
        finally:
            await browser.close()


@pytest.mark.slow
def test_the_examples_run_as_modules() -> None:
    """`uvicorn reports_app:app` and `jobworker run reports_app` import them from examples/."""
    code = "import reports_app, fastapi_reports; print(reports_app.app, fastapi_reports.api)"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=EXAMPLES, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
