"""The dashboard as files: every page is the same document, with no inline script, under the
security headers; assets by content digest, cached for good; nothing from another origin."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from jobworker import App
from jobworker.web.app import create_app
from jobworker.web.dashboard import PAGES
from jobworker.web.dashboard.routes import STATIC, asset_digest
from jobworker.web.server import tail_middleware, tail_routes

from .admin_support import app, config, jobs, web_config  # noqa: F401

PREFIX = "/ops/jobs-ui"


@pytest.fixture
async def http(app: App) -> AsyncIterator[httpx.AsyncClient]:  # noqa: F811
    web = create_app(
        app,
        prefix=PREFIX,
        routes=tail_routes(app, PREFIX, web_config()),
        middleware=tail_middleware(),
    )
    transport = httpx.ASGITransport(app=web)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.mark.parametrize(
    "path",
    ["/", "/login", "/jobs", "/jobs/0190c1d2-aaaa-7bbb-8ccc-000000000001", "/recurring", "/queues"],
)
async def test_every_page_is_the_document_under_the_policy(
    http: httpx.AsyncClient, path: str
) -> None:
    response = await http.get(PREFIX + path, params={"status": "dead"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["cache-control"] == "no-cache"
    page = response.text
    assert '<meta name="jobworker-base" content="/ops/jobs-ui">' in page
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page, re.S)
    assert scripts and all('src="' in attributes and body == "" for attributes, body in scripts)
    assert "http://" not in page and "https://" not in page  # nothing from elsewhere


async def test_assets_are_served_by_digest_and_kept(http: httpx.AsyncClient) -> None:
    page = (await http.get(PREFIX + "/")).text
    digest = asset_digest()
    assert f"{PREFIX}/static/{digest}/app.js" in page
    for name in ("app.js", "style.css", "vendor/preact.js", "vendor/hooks.js", "vendor/htm.js"):
        response = await http.get(f"{PREFIX}/static/{digest}/{name}")
        assert response.status_code == 200, name
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        expected = "text/css" if name.endswith(".css") else "javascript"
        assert expected in response.headers["content-type"]
    assert (await http.get(f"{PREFIX}/static/{digest}/nothing.js")).status_code == 404
    assert (await http.get(f"{PREFIX}/static/000000000000/app.js")).status_code == 404


def test_no_script_loads_anything_from_elsewhere() -> None:
    for path in STATIC.rglob("*.js"):
        text = path.read_text()
        imports = re.findall(r"""(?:from|import)\s*["']([^"']+)["']""", text)
        assert all(target.startswith("./") or target.startswith("../") for target in imports), path
        if "vendor" not in path.parts:
            assert "innerHTML" not in text, path  # job data is text, never HTML


def test_the_vendored_libraries_are_recorded() -> None:
    record = (STATIC / "vendor" / "README.md").read_text()
    for name in ("preact.js", "hooks.js", "htm.js", "LICENSE-preact", "LICENSE-htm"):
        assert (STATIC / "vendor" / name).is_file()
        assert name in record


def test_the_pages_are_the_routes_the_script_knows() -> None:
    router = (STATIC / "router.js").read_text()
    for path in PAGES:
        if path == "/":
            continue
        pattern = path.replace("/", "\\/").replace("{id}", "(?<id>[^/]+)")
        assert pattern in router, path


async def test_without_a_password_there_is_no_dashboard(app: App) -> None:  # noqa: F811
    web = create_app(
        app,
        prefix=PREFIX,
        routes=tail_routes(
            app, PREFIX, web_config(admin_password_hash=None, readonly_password_hash=None)
        ),
    )
    transport = httpx.ASGITransport(app=web)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        assert (await client.get(PREFIX + "/")).status_code == 404
