"""`jobworker web` with a password: the admin API, its live stream of a job and the security
headers, served by a real process (two worker processes sharing one session secret)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from jobworker import App
from jobworker.testing import drain
from jobworker.web.config import hash_password

from ..conftest import TESTS
from .test_web_command import WebProcess
from .test_web_command import start as start  # the fixture

sys.path.insert(0, str(TESTS / "apps"))
import web_jobs

pytestmark = pytest.mark.slow

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def password_hash() -> str:
    return hash_password(PASSWORD)


def login(http: httpx.Client, web: WebProcess) -> str:
    """Log `http` in as the admin; the CSRF token of its session."""
    answer = http.post(
        "/jobs-ui/api/login",
        json={"username": "admin", "password": PASSWORD},
        headers={"Origin": web.base},
    )
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["csrfToken"]
    return token


def test_the_admin_api_and_its_job_stream_behind_a_login(
    tmp_path: Path, password_hash: str, start: Callable[..., WebProcess]
) -> None:
    url = f"sqlite:///{tmp_path / 'web.db'}"
    app = App(url, bind=False)
    try:
        handle = app.client.enqueue("web.echo", {"text": "<script>alert(1)</script>"})
        drain(app)
        web = start(
            "--database-url",
            url,
            "--workers",
            "2",
            env={"JOBWORKER_WEB_ADMIN_PASSWORD_HASH": password_hash},
        )
        assert "admin API: on at /jobs-ui/api, logins: admin (admin)" in web.log
        assert PASSWORD not in web.log and password_hash not in web.log

        assert web.get("/jobs-ui/api/stats").status_code == 401
        with httpx.Client(base_url=web.base, timeout=10) as http:
            csrf = login(http, web)
            # New connections land on either process: the session holds on both.
            for _ in range(8):
                answer = http.get("/jobs-ui/api/stats", headers={"Connection": "close"})
                assert answer.status_code == 200, answer.text
                assert "default-src 'self'" in answer.headers["content-security-policy"]
                assert answer.headers["x-content-type-options"] == "nosniff"
            detail = http.get(f"/jobs-ui/api/jobs/{handle.job_id}")
            assert detail.headers["content-type"].startswith("application/json")
            assert "<script>" not in detail.text  # escaped inside the JSON strings

            stream = http.get(f"/jobs-ui/api/jobs/{handle.job_id}/stream")
            assert stream.headers["content-type"].startswith("text/event-stream")
            frames = [f for f in stream.text.split("\n\n") if "event: " in f]
            kinds = [
                line[7:] for f in frames for line in f.split("\n") if line.startswith("event: ")
            ]
            assert kinds[0] == "lifecycle" and "result" in kinds and kinds[-1] == "lifecycle"
            last = next(line[4:] for line in frames[-1].split("\n") if line.startswith("id: "))
            after_end = http.get(
                f"/jobs-ui/api/jobs/{handle.job_id}/stream", headers={"Last-Event-ID": last}
            )
            assert after_end.status_code == 204
            assert http.get("/jobs-ui/api/jobs/not-an-id/stream").status_code == 400
            for _ in range(4):  # the CSRF token holds on either process too
                paused = http.post(
                    "/jobs-ui/api/queues/default/pause",
                    headers={"Origin": web.base, "X-CSRF-Token": csrf, "Connection": "close"},
                )
                assert paused.status_code == 200, paused.text
        anonymous = httpx.get(f"{web.base}/jobs-ui/api/jobs/{handle.job_id}/stream", timeout=10)
        assert anonymous.status_code == 401
        code, _ = web.stop()
        assert code == 0
    finally:
        app.close()
    assert web_jobs.echo.name == "web.echo"
