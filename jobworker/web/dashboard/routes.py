"""`dashboard_routes(prefix)`: the routes that serve the dashboard under the web tail's prefix.

Every page of the dashboard is the same HTML document (the script reads the path and draws the
page), so a link to a filtered job list or to a job can be shared and reloaded. The script,
styles and vendored libraries are served under `static/<digest>/`, where the digest is taken
from their contents: a browser may keep them for a year, and a new release is a new path.
"""

from __future__ import annotations

import hashlib
import html
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

__all__ = ["PAGES", "STATIC", "asset_digest", "dashboard_routes"]

STATIC = Path(__file__).parent / "static"

# The paths the page draws itself; anything else under the prefix is not the dashboard's.
PAGES = ("/", "/login", "/jobs", "/jobs/{id}", "/recurring", "/queues")

_DOCUMENT = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="jobworker-base" content="{base}">
<meta name="robots" content="noindex">
<title>jobworker</title>
<link rel="icon" href="{assets}/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="{assets}/style.css">
<script type="module" src="{assets}/app.js"></script>
</head>
<body>
<noscript>The jobworker dashboard needs JavaScript. The admin API is at {base}/api.</noscript>
<div id="root"></div>
</body>
</html>
"""


def asset_digest(directory: Path = STATIC) -> str:
    """A short digest of every file under `directory` (names and contents)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(path.relative_to(directory).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


class _ImmutableFiles(StaticFiles):
    """Static files a browser may keep for a year: their path changes with their contents."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_cached(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 200:
                headers = [*message.get("headers", [])]
                headers.append((b"cache-control", b"public, max-age=31536000, immutable"))
                message = {**message, "headers": headers}
            await send(message)

        await super().__call__(scope, receive, send_cached)


def dashboard_routes(prefix: str) -> list[BaseRoute]:
    """The dashboard's pages and assets, as routes under `prefix` (where the web tail is
    mounted; the page calls the admin API at `<prefix>/api`)."""
    digest = asset_digest()
    assets = f"{prefix}/static/{digest}"
    document = _DOCUMENT.format(base=html.escape(prefix), assets=html.escape(assets)).encode()

    async def page(request: Request) -> Response:
        return Response(
            document,
            media_type="text/html; charset=utf-8",
            headers={"cache-control": "no-cache"},
        )

    return [
        *(Route(path, page, methods=["GET", "HEAD"]) for path in PAGES),
        Mount(f"/static/{digest}", app=_ImmutableFiles(directory=STATIC)),
    ]
