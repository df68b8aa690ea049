"""The admin API's security list, one point per test: sessions, throttling, same origin, CSRF,
roles, cookies, and what never reaches a log."""

from __future__ import annotations

import logging
import uuid
from http.cookies import SimpleCookie

import httpx
import pytest
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from jobworker import App
from jobworker.web.admin import admin_api
from jobworker.web.admin.auth import LoginThrottle
from jobworker.web.admin.sessions import COOKIE_NAME, issue_session, read_session
from jobworker.web.config import WebConfig

from .admin_support import (  # noqa: F401 (fixtures)
    ADMIN_PASSWORD,
    API,
    PREFIX,
    VIEWER_PASSWORD,
    Browser,
    Jobs,
    admin,
    anonymous,
    app,
    config,
    jobs,
    mounted,
    site,
    viewer,
    web_config,
)

ID = uuid.UUID(int=1)
READS = [
    "/stats",
    "/jobs",
    f"/jobs/{ID}",
    f"/jobs/{ID}/events",
    "/recurring",
    "/queues",
    "/workers",
    "/types",
    "/session",
]
WRITES = [
    ("POST", f"/jobs/{ID}/cancel"),
    ("POST", f"/jobs/{ID}/retry"),
    ("POST", f"/jobs/{ID}/run-again"),
    ("DELETE", f"/jobs/{ID}"),
    ("POST", "/recurring/nightly/enable"),
    ("POST", "/recurring/nightly/disable"),
    ("POST", "/recurring/nightly/run"),
    ("POST", "/queues/reports/pause"),
    ("POST", "/queues/reports/resume"),
]


def test_the_lists_name_every_route_but_login_logout_and_the_document(app: App) -> None:
    api = admin_api(app.client, web_config(), prefix=PREFIX)
    assert api is not None
    routes = {(e.method, e.path) for e in api.state.endpoints}
    listed = {("GET", p.replace(str(ID), "{id}")) for p in READS}
    listed |= {
        (m, p.replace(str(ID), "{id}").replace("nightly", "{name}").replace("reports", "{name}"))
        for m, p in WRITES
    }
    assert routes - listed == {("POST", "/login"), ("POST", "/logout")}


async def test_no_cookie_is_401_on_every_route_but_login(anonymous: Browser) -> None:
    for path in READS:
        response = await anonymous.get(path)
        assert response.status_code == 401, path
        assert response.json() == {"error": "log in first"}
    for method, path in WRITES:
        assert (await anonymous.send(method, path)).status_code == 401, path


async def test_wrong_passwords_are_throttled_per_client(site: object, config: WebConfig) -> None:
    attacker = Browser(site, address="203.0.113.9")  # type: ignore[arg-type]
    bystander = Browser(site, address="198.51.100.7")  # type: ignore[arg-type]
    try:
        for _ in range(config.login_max_failures):
            wrong = await attacker.login("admin", "guess")
            assert wrong.status_code == 401
            assert wrong.json() == {"error": "wrong username or password"}
        throttled = await attacker.login("admin", "guess")
        assert throttled.status_code == 429
        assert 1 <= int(throttled.headers["Retry-After"]) <= int(config.login_failure_window)
        # Even the right password waits: the throttle is checked before the password.
        assert (await attacker.login()).status_code == 429
        assert COOKIE_NAME not in attacker.http.cookies
        assert (await bystander.login()).status_code == 200
    finally:
        await attacker.aclose()
        await bystander.aclose()


def test_the_throttle_forgets_old_failures_and_stays_bounded() -> None:
    now = [1000.0]
    throttle = LoginThrottle(max_failures=2, window=60.0, max_clients=3, clock=lambda: now[0])
    throttle.failed("a")
    now[0] += 30
    throttle.failed("a")
    wait = throttle.retry_after("a")
    assert wait == pytest.approx(30.0)
    now[0] += 31
    assert throttle.retry_after("a") is None  # the first failure left the window
    throttle.succeeded("a")
    for client in ("b", "c", "d", "e"):
        throttle.failed(client)
    assert len(throttle) == 3  # the least recently failing address was forgotten
    throttle.failed("e")
    assert throttle.retry_after("e") is not None and throttle.retry_after("b") is None


async def test_a_cross_origin_post_is_403(admin: Browser, app: App, jobs: Jobs) -> None:
    handle = await jobs.cleanup.adelay()
    path = f"/jobs/{handle.job_id}/cancel"
    for headers in (
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://testserver.evil.example"},
        {"Origin": "https://testserver"},  # another scheme is another origin
        {"Origin": "", "Referer": "https://evil.example/page"},
    ):
        response = await admin.post(path, headers=headers)
        assert response.status_code == 403, headers
        assert "cross-origin" in response.json()["error"]
    no_headers = await admin.http.post(f"{API}{path}", headers={"X-CSRF-Token": admin.csrf or ""})
    assert no_headers.status_code == 403
    job = await app.client.aget(handle.job_id)
    assert job is not None and job.status.value == "queued"
    referer = await admin.http.post(
        f"{API}{path}",
        headers={"Referer": "http://testserver/jobs-ui/", "X-CSRF-Token": admin.csrf or ""},
    )
    assert referer.status_code == 200


async def test_login_checks_the_origin_too(anonymous: Browser) -> None:
    response = await anonymous.http.post(
        f"{API}/login",
        json={"username": "admin", "password": ADMIN_PASSWORD},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403 and COOKIE_NAME not in response.headers.get("set-cookie", "")


async def test_an_allowed_extra_origin_may_post(app: App, jobs: Jobs) -> None:
    site = mounted(app, web_config(allowed_origins="https://ops.example.com"))
    browser = Browser(site)
    try:
        assert (await browser.login()).status_code == 200
        response = await browser.post(
            "/queues/reports/pause", headers={"Origin": "https://ops.example.com"}
        )
        assert response.status_code == 200
    finally:
        await browser.aclose()


async def test_a_missing_or_wrong_csrf_token_is_403(admin: Browser, viewer: Browser) -> None:
    for token in ("", "x" * 43, viewer.csrf or "?"):
        response = await admin.post("/queues/reports/pause", headers={"X-CSRF-Token": token})
        assert response.status_code == 403, token
        assert "X-CSRF-Token" in response.json()["error"]
    unset = await admin.http.post(f"{API}/queues/reports/pause", headers={"Origin": admin.origin})
    assert unset.status_code == 403
    assert (await admin.get("/queues")).json()["queues"] == []


async def test_the_read_only_role_is_403_on_every_mutating_route(viewer: Browser) -> None:
    for method, path in WRITES:
        response = await viewer.send(method, path)
        assert response.status_code == 403, path
        assert response.json() == {"error": "this session is read-only"}


async def test_a_tampered_or_expired_cookie_is_401(admin: Browser, config: WebConfig) -> None:
    cookie = admin.http.cookies[COOKIE_NAME]
    body, signature = cookie.split(".")
    forged_body = issue_session(config, "readonly").cookie.split(".")[0]
    expired = issue_session(config, "admin", now=0.0).cookie
    other_secret = issue_session(web_config(session_secret="s" * 40), "admin").cookie
    for value in (
        f"{forged_body}.{signature}",
        f"{body}.{signature[:-2]}AA",
        f"{body}.",
        "garbage",
        expired,
        other_secret,
    ):
        admin.http.cookies.set(COOKIE_NAME, value, path=PREFIX)
        assert (await admin.get("/session")).status_code == 401, value
    admin.http.cookies.set(COOKIE_NAME, cookie, path=PREFIX)
    assert (await admin.get("/session")).json()["role"] == "admin"


def test_a_new_password_ends_the_sessions_of_its_role(config: WebConfig) -> None:
    session = issue_session(config, "admin")
    assert read_session(config, session.cookie) is not None
    changed = web_config(session_secret=None)
    assert read_session(changed, session.cookie) is None


async def test_logout_ends_the_session_even_if_the_cookie_is_replayed(admin: Browser) -> None:
    cookie = admin.http.cookies[COOKIE_NAME]
    response = await admin.post("/logout")
    assert response.status_code == 204
    assert 'jobworker_session=""' in response.headers["set-cookie"]
    admin.http.cookies.set(COOKIE_NAME, cookie, path=PREFIX)
    assert (await admin.get("/session")).status_code == 401


async def test_the_session_route_says_the_role_and_its_csrf_token(
    admin: Browser, viewer: Browser
) -> None:
    mine = (await admin.get("/session")).json()
    assert mine["role"] == "admin" and mine["csrfToken"] == admin.csrf and mine["expiresAt"] > 0
    assert (await viewer.get("/session")).json()["role"] == "readonly"


def _cookie(response: httpx.Response) -> SimpleCookie:
    jar: SimpleCookie = SimpleCookie()
    jar.load(response.headers["set-cookie"])
    return jar


async def test_the_cookie_is_httponly_strict_scoped_and_not_secure_over_http(
    anonymous: Browser,
) -> None:
    response = await anonymous.login()
    morsel = _cookie(response)[COOKIE_NAME]
    assert morsel["httponly"] is True and morsel["samesite"] == "strict"
    assert morsel["path"] == PREFIX and not morsel["secure"]
    assert int(morsel["max-age"]) == 8 * 3600


async def test_the_cookie_is_secure_over_https_and_behind_a_proxy(app: App) -> None:
    site = mounted(app, web_config())
    direct = Browser(site, base_url="https://testserver")
    proxied = Browser(ProxyHeadersMiddleware(site, trusted_hosts="*"))
    try:
        assert _cookie(await direct.login())[COOKIE_NAME]["secure"] is True
        response = await proxied.http.post(
            f"{API}/login",
            json={"username": "admin", "password": ADMIN_PASSWORD},
            headers={"Origin": "https://testserver", "X-Forwarded-Proto": "https"},
        )
        assert response.status_code == 200
        assert _cookie(response)[COOKIE_NAME]["secure"] is True
    finally:
        await direct.aclose()
        await proxied.aclose()


@pytest.mark.parametrize(("mode", "secure"), [("always", True), ("never", False)])
async def test_secure_cookies_can_be_forced(app: App, mode: str, secure: bool) -> None:
    browser = Browser(mounted(app, web_config(secure_cookies=mode)), base_url="https://testserver")
    try:
        assert bool(_cookie(await browser.login())[COOKIE_NAME]["secure"]) is secure
    finally:
        await browser.aclose()


async def test_get_never_changes_anything(admin: Browser, jobs: Jobs) -> None:
    handle = await jobs.ok.adelay()
    for path in (f"/jobs/{handle.job_id}/cancel", "/queues/reports/pause", "/login", "/logout"):
        assert (await admin.get(path)).status_code == 405, path
    job = (await admin.get(f"/jobs/{handle.job_id}")).json()["job"]
    assert job["status"] == "queued"
    assert (await admin.get("/queues")).json()["queues"] == [
        {"name": "reports", "paused": False, "counts": {"queued": 1}, "estimated": False}
    ]


async def test_login_takes_credentials_from_the_body_only(anonymous: Browser) -> None:
    in_query = await anonymous.http.post(
        f"{API}/login",
        params={"username": "admin", "password": ADMIN_PASSWORD},
        headers={"Origin": anonymous.origin},
    )
    assert in_query.status_code == 400 and COOKIE_NAME not in anonymous.http.cookies
    for body in (b"not json", b'{"username": "admin"}', b"[]"):
        response = await anonymous.http.post(
            f"{API}/login", content=body, headers={"Origin": anonymous.origin}
        )
        assert response.status_code == 400, body


async def test_the_viewer_cannot_log_in_with_the_admin_password(anonymous: Browser) -> None:
    assert (await anonymous.login("viewer", ADMIN_PASSWORD)).status_code == 401
    assert (await anonymous.login("admin", VIEWER_PASSWORD)).status_code == 401
    assert (await anonymous.login("root", ADMIN_PASSWORD)).status_code == 401


async def test_without_a_password_the_admin_api_is_off_and_says_so(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="jobworker.web.admin"):
        assert admin_api(app.client, WebConfig.load({}), prefix=PREFIX) is None
    assert "admin API is off: no password is configured" in caplog.text
    browser = Browser(mounted(app, WebConfig.load({})))
    try:
        assert (await browser.login()).status_code == 404
        assert (await browser.get("/stats")).status_code == 404
    finally:
        await browser.aclose()


async def test_a_read_only_password_alone_turns_on_a_read_only_api(app: App) -> None:
    only_viewer = web_config(admin_password_hash=None)
    config = WebConfig.load({}, readonly_password_hash=only_viewer.readonly_password_hash)
    browser = Browser(mounted(app, config))
    try:
        assert (await browser.login()).status_code == 401
        assert (await browser.login("viewer", VIEWER_PASSWORD)).status_code == 200
        assert (await browser.post("/queues/reports/pause")).status_code == 403
    finally:
        await browser.aclose()


async def test_passwords_cookies_and_secrets_never_reach_the_log(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "a-session-secret-that-must-stay-private-0123456789"
    config = web_config(session_secret=secret)
    browser = Browser(mounted(app, config))
    try:
        with caplog.at_level(logging.DEBUG):
            await browser.login("admin", "wrong-" + ADMIN_PASSWORD)
            assert (await browser.login()).status_code == 200
            cookie = browser.http.cookies[COOKIE_NAME]
            await browser.get("/stats")
            await browser.post("/queues/reports/pause")
            await browser.post("/logout")
            logging.getLogger("test").info("config: %r", config)
        text = caplog.text
        assert "admin login from 127.0.0.1 as admin" in text
        assert "failed admin login from 127.0.0.1" in text
        hashed = config.admin_password_hash or "?"
        for private in (ADMIN_PASSWORD, secret, hashed, cookie, cookie.split(".")[1]):
            assert private not in text
    finally:
        await browser.aclose()
