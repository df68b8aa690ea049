"""`POST jobs/{id}/run-again`: a system job enqueued anew with its type, arguments, queue,
priority and attempts; refused for a read-only session, a user job, an unknown id, and a job
this web process does not define. On SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

from jobworker import App, JobContext, JobStatus, Registry, ScheduleOptions
from jobworker.testing import adrain

from ..conftest import FAST, Store
from .admin_support import (  # noqa: F401 (fixtures)
    Browser,
    Jobs,
    admin,
    app,
    config,
    jobs,
    site,
    viewer,
)


async def test_run_again_enqueues_a_copy_of_a_system_job(
    admin: Browser, app: App, jobs: Jobs
) -> None:
    options = ScheduleOptions(queue="maintenance", priority=7, max_retries=4)
    first = await app.client.aenqueue("system.cleanup", {"days": 9}, options)
    await adrain(app, queues=["maintenance"])
    response = await admin.post(f"/jobs/{first.job_id}/run-again")
    assert response.status_code == 200
    new_id = response.json()["jobId"]
    assert set(response.json()) == {"jobId"} and new_id != str(first.job_id)
    copy = await app.client.aget(new_id)
    assert copy is not None and copy.status is JobStatus.QUEUED
    assert (copy.job_type, copy.args, copy.kind.value) == ("system.cleanup", {"days": 9}, "system")
    assert (copy.queue, copy.priority, copy.max_attempts) == ("maintenance", 7, 5)
    original = await app.client.aget(first.job_id)
    assert original is not None and original.status is JobStatus.SUCCEEDED  # left as it was
    await adrain(app, queues=["maintenance"])
    assert await app.client.aresult(new_id) == 9
    listed = (await admin.get("/jobs", type="system.cleanup")).json()["jobs"]
    assert [job["jobId"] for job in listed] == [new_id, str(first.job_id)]


async def test_run_again_is_refused_to_a_read_only_session(
    viewer: Browser, app: App, jobs: Jobs
) -> None:
    handle = await jobs.cleanup.adelay()
    refused = await viewer.post(f"/jobs/{handle.job_id}/run-again")
    assert refused.status_code == 403 and "read-only" in refused.json()["error"]
    assert len(await app.client.alist()) == 1


async def test_run_again_is_refused_for_a_user_job(admin: Browser, app: App, jobs: Jobs) -> None:
    handle = await jobs.ok.adelay(n=3)
    refused = await admin.post(f"/jobs/{handle.job_id}/run-again")
    assert refused.status_code == 403
    assert "user job" in refused.json()["error"] and "only delete" in refused.json()["error"]
    assert len(await app.client.alist()) == 1


async def test_run_again_of_an_unknown_or_undefined_job(
    admin: Browser, app: App, store: Store
) -> None:
    missing = await admin.post(f"/jobs/{uuid.uuid4()}/run-again")
    assert missing.status_code == 404 and "no job" in missing.json()["error"]
    assert (await admin.post("/jobs/not-a-uuid/run-again")).status_code == 400
    elsewhere = Registry()

    @elsewhere.job(name="system.elsewhere", kind="system")
    async def defined_elsewhere(ctx: JobContext) -> None:
        return None

    other = App(store.url, registry=elsewhere, database_schema=store.schema, **FAST)
    try:
        handle = await other.client.aenqueue("system.elsewhere")
    finally:
        await other.aclose()
    refused = await admin.post(f"/jobs/{handle.job_id}/run-again")
    assert refused.status_code == 409 and "system.elsewhere" in refused.json()["error"]


async def test_run_again_is_in_the_openapi_document(admin: Browser) -> None:
    document = (await admin.get("/openapi.json")).json()
    operation = document["paths"]["/jobs/{id}/run-again"]["post"]
    assert {"200", "403", "404", "409"} <= set(operation["responses"])
