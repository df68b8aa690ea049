"""The browser-side protections of the web tail: security headers on every answer (without
buffering a stream), no CORS, and text from jobs that stays inert JSON."""

from __future__ import annotations

import asyncio

import msgspec
from starlette.types import Message, Receive, Scope, Send

from jobworker import App
from jobworker.web.security import CONTENT_SECURITY_POLICY, SecurityHeaders

from .admin_support import (  # noqa: F401 (fixtures)
    Browser,
    Jobs,
    admin,
    anonymous,
    app,
    config,
    jobs,
    site,
)

SCRIPT = "</script><script>alert(document.cookie)</script>&amp;"


async def test_every_answer_has_the_csp_and_nosniff(admin: Browser, anonymous: Browser) -> None:
    for response in (
        await admin.get("/stats"),
        await anonymous.get("/stats"),
        await admin.get("/no-such-route"),
        await admin.http.get("/not-the-api-at-all"),
    ):
        headers = response.headers
        assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "same-origin"
        assert headers["x-frame-options"] == "DENY"
    policy = CONTENT_SECURITY_POLICY
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy


async def test_no_cors_header_even_for_a_foreign_origin(admin: Browser) -> None:
    for response in (
        await admin.http.get("/jobs-ui/api/stats", headers={"Origin": "https://evil.example"}),
        await admin.http.options(
            "/jobs-ui/api/stats",
            headers={
                "Origin": "https://evil.example",
                "Access-Control-Request-Method": "POST",
            },
        ),
    ):
        assert not [name for name in response.headers if name.startswith("access-control-")]


async def test_a_header_the_app_sets_itself_is_kept() -> None:
    sent: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-security-policy", b"default-src 'none'")],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    async def send(message: Message) -> None:
        sent.append(message)

    await SecurityHeaders(app)({"type": "http"}, _nothing, send)
    headers = sent[0]["headers"]
    assert [v for n, v in headers if n == b"content-security-policy"] == [b"default-src 'none'"]
    assert (b"x-content-type-options", b"nosniff") in headers


async def test_a_streaming_answer_is_passed_on_chunk_by_chunk() -> None:
    release = asyncio.Event()
    sent: list[Message] = []
    first_arrived = asyncio.Event()

    async def sse(scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        await release.wait()
        await send({"type": "http.response.body", "body": b"data: 2\n\n"})

    async def send(message: Message) -> None:
        sent.append(message)
        if message.get("body") == b"data: 1\n\n":
            first_arrived.set()

    task = asyncio.create_task(SecurityHeaders(sse)({"type": "http"}, _nothing, send))
    await asyncio.wait_for(first_arrived.wait(), 5)
    assert len(sent) == 2 and not task.done()  # the first event is out while the app waits
    assert (b"x-content-type-options", b"nosniff") in sent[0]["headers"]
    release.set()
    await task
    assert sent[-1]["body"] == b"data: 2\n\n"


async def test_websocket_and_lifespan_pass_through_untouched() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    async def send(message: Message) -> None:
        raise AssertionError("nothing is sent")

    await SecurityHeaders(app)({"type": "lifespan"}, _nothing, send)
    assert seen == ["lifespan"]


async def test_script_in_a_job_is_returned_as_inert_json(
    admin: Browser, app: App, jobs: Jobs
) -> None:
    from jobworker.testing import adrain

    handle = await jobs.ok.adelay(n=1, note=SCRIPT)
    await app.client.aschedule_recurring("xss", "0 2 * * *", "reports.ok", {"note": SCRIPT})
    await app.client.acancel(handle.job_id, SCRIPT)
    await adrain(app)
    for path in (f"/jobs/{handle.job_id}", "/jobs", "/recurring"):
        response = await admin.get(path)
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert b"<" not in response.content and b">" not in response.content, path
        assert b"&" not in response.content, path
    (definition,) = (await admin.get("/recurring")).json()["recurring"]
    assert msgspec.json.decode(definition["argsJson"]) == {"note": SCRIPT}
    job = (await admin.get(f"/jobs/{handle.job_id}")).json()["job"]
    assert job["errorMessage"] == SCRIPT


async def _nothing() -> Message:
    return {"type": "http.disconnect"}
