"""Every route of the admin API, its answer and its errors, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid

import msgspec
import pytest

from jobworker import App, JobStatus, Registry
from jobworker.testing import adrain
from jobworker.web.config import WebConfig

from ..conftest import Store
from .admin_support import (  # noqa: F401 (fixtures)
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
)


async def test_stats_counts_queues_and_names_this_instance(
    admin: Browser, app: App, jobs: Jobs
) -> None:
    await jobs.ok.adelay(n=1)
    await jobs.ok.adelay(n=2)
    await app.client.apause_queue("reports")
    response = await admin.get("/stats")
    assert response.status_code == 200
    stats = response.json()
    assert stats["counts"]["queued"] == 2 and stats["counts"]["dead"] == 0
    assert set(stats["counts"]) == {status.value for status in JobStatus}
    assert (stats["queueDepth"], stats["scheduledPending"], stats["runningNow"]) == (2, 0, 0)
    (reports,) = [q for q in stats["queues"] if q["name"] == "reports"]
    assert reports["paused"] is True and reports["counts"]["queued"] == 2
    assert stats["beat"] is None
    instance = stats["instance"]
    assert instance["storage"] == app.dialect and instance["bus"] == "database"
    assert isinstance(instance["pid"], int) and instance["host"] and instance["version"]


async def test_jobs_are_listed_newest_first_and_filtered(
    admin: Browser, app: App, jobs: Jobs
) -> None:
    first = await jobs.ok.adelay(n=1)
    second = await jobs.ok.adelay(n=2)
    dead = await jobs.boom.adelay()
    await adrain(app, queues=["default"])
    listed = (await admin.get("/jobs")).json()
    assert [job["jobId"] for job in listed["jobs"]] == [
        str(dead.job_id),
        str(second.job_id),
        str(first.job_id),
    ]
    assert listed["next"] is None and listed["unreadable"] == []
    assert listed["jobs"][1]["jobType"] == "reports.ok" and listed["jobs"][1]["queue"] == "reports"
    only_dead = (await admin.get("/jobs", status="dead")).json()["jobs"]
    assert [job["jobId"] for job in only_dead] == [str(dead.job_id)]
    assert len((await admin.get("/jobs", type="reports.ok")).json()["jobs"]) == 2
    assert len((await admin.get("/jobs", queue="reports", limit=1)).json()["jobs"]) == 1


async def test_jobs_filter_on_kind_and_search(admin: Browser, app: App, jobs: Jobs) -> None:
    user = await jobs.ok.adelay()
    system = await jobs.cleanup.adelay()
    by_kind = (await admin.get("/jobs", kind="system")).json()["jobs"]
    assert [(job["jobId"], job["kind"]) for job in by_kind] == [(str(system.job_id), "system")]
    assert [j["jobId"] for j in (await admin.get("/jobs", kind="user")).json()["jobs"]] == [
        str(user.job_id)
    ]
    by_type = (await admin.get("/jobs", search="CLEAN")).json()["jobs"]
    assert [job["jobId"] for job in by_type] == [str(system.job_id)]
    by_id = (await admin.get("/jobs", search=str(user.job_id)[-12:])).json()["jobs"]
    assert [job["jobId"] for job in by_id] == [str(user.job_id)]
    bad = await admin.get("/jobs", kind="admin")
    assert bad.status_code == 400 and "kind" in bad.json()["error"]


async def test_jobs_page_by_keyset(admin: Browser, jobs: Jobs) -> None:
    made = [str((await jobs.ok.adelay(n=n)).job_id) for n in range(5)]
    seen: list[str] = []
    page = (await admin.get("/jobs", limit=2)).json()
    while True:
        seen.extend(job["jobId"] for job in page["jobs"])
        if page["next"] is None:
            break
        assert page["next"] == page["jobs"][-1]["jobId"]
        await jobs.ok.adelay(n=99)  # a newer job does not shift the pages
        page = (await admin.get("/jobs", limit=2, before=page["next"])).json()
    assert seen == made[::-1]
    bad = await admin.get("/jobs", before="not-an-id")
    assert bad.status_code == 400 and "before" in bad.json()["error"]


async def test_jobs_filter_on_the_idempotency_key(admin: Browser, app: App, jobs: Jobs) -> None:
    from jobworker import ScheduleOptions

    handle = await app.client.aenqueue(
        "reports.ok", {"n": 4}, ScheduleOptions(idempotency_key="order-4")
    )
    await jobs.ok.adelay(n=5)
    found = (await admin.get("/jobs", idempotency_key="order-4")).json()["jobs"]
    assert [(job["jobId"], job["idempotencyKey"]) for job in found] == [
        (str(handle.job_id), "order-4")
    ]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"status": "sleeping"}, "status"),
        ({"limit": "0"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_jobs_refuse_a_bad_query(
    admin: Browser, params: dict[str, str], message: str
) -> None:
    response = await admin.get("/jobs", **params)
    assert response.status_code == 400
    assert message in response.json()["error"]


async def test_a_job_comes_with_its_attempts(admin: Browser, app: App, jobs: Jobs) -> None:
    dead = await jobs.boom.adelay()
    await adrain(app, queues=["default"])
    response = await admin.get(f"/jobs/{dead.job_id}")
    assert response.status_code == 200
    detail = response.json()
    assert detail["job"]["jobId"] == str(dead.job_id) and detail["job"]["status"] == "dead"
    assert detail["job"]["errorMessage"] and "it broke" in detail["job"]["errorMessage"]
    (attempt,) = detail["attempts"]
    assert attempt["attempt"] == 1 and attempt["outcome"] == "dead"
    assert attempt["jobId"] == str(dead.job_id) and attempt["startedAt"] and attempt["worker"]


async def test_an_unknown_or_malformed_job_id(admin: Browser) -> None:
    unknown = await admin.get(f"/jobs/{uuid.uuid4()}")
    assert unknown.status_code == 404 and "no job" in unknown.json()["error"]
    malformed = await admin.get("/jobs/not-a-uuid")
    assert malformed.status_code == 400 and "not a job id" in malformed.json()["error"]
    for path in ("/cancel", "/retry"):
        assert (await admin.post(f"/jobs/{uuid.uuid4()}{path}")).status_code == 404
    assert (await admin.delete(f"/jobs/{uuid.uuid4()}")).status_code == 404
    assert (await admin.get(f"/jobs/{uuid.uuid4()}/events")).status_code == 404


async def test_events_page_in_order(admin: Browser, app: App, jobs: Jobs) -> None:
    handle = await jobs.ok.adelay(n=7)
    await adrain(app, queues=["reports"])
    everything = (await admin.get(f"/jobs/{handle.job_id}/events")).json()
    kinds = [event["kind"] for event in everything["events"]]
    assert kinds[0] == "lifecycle" and "progress" in kinds and "result" in kinds
    assert everything["next"] is None
    progress = next(e for e in everything["events"] if e["kind"] == "progress")
    assert (progress["done"], progress["total"], progress["label"]) == (1, 2, "half")
    first = (await admin.get(f"/jobs/{handle.job_id}/events", limit=2)).json()
    assert [e["seq"] for e in first["events"]] == [e["seq"] for e in everything["events"][:2]]
    assert first["next"] == first["events"][-1]["seq"]
    rest = (
        await admin.get(f"/jobs/{handle.job_id}/events", after_sequence=first["next"], limit=100)
    ).json()
    assert first["events"] + rest["events"] == everything["events"]
    bad = await admin.get(f"/jobs/{handle.job_id}/events", after_sequence=-1)
    assert bad.status_code == 400


async def test_cancel_a_waiting_system_job(admin: Browser, app: App, jobs: Jobs) -> None:
    handle = await jobs.cleanup.adelay()
    response = await admin.post(f"/jobs/{handle.job_id}/cancel")
    assert response.status_code == 200
    assert response.json() == {"jobId": str(handle.job_id), "result": "cancelled"}
    job = await app.client.aget(handle.job_id)
    assert job is not None and job.status is JobStatus.CANCELLED
    again = await admin.post(f"/jobs/{handle.job_id}/cancel")
    assert again.json()["result"] == "finished"


async def test_retry_a_dead_system_job_and_only_a_dead_one(
    admin: Browser, app: App, jobs: Jobs
) -> None:
    dead = await jobs.broken.adelay()
    waiting = await jobs.cleanup.adelay()
    await adrain(app, queues=["default"])
    assert (await app.client.aget(dead.job_id)).status is JobStatus.DEAD  # type: ignore[union-attr]
    await app.client.apause_queue("default")  # nothing runs it meanwhile
    queued = await jobs.cleanup.adelay()
    response = await admin.post(f"/jobs/{dead.job_id}/retry")
    assert response.status_code == 200
    assert response.json()["jobId"] == str(dead.job_id)
    assert response.json()["status"] == "queued" and response.json()["kind"] == "system"
    for other in (waiting, queued):  # succeeded, queued
        refused = await admin.post(f"/jobs/{other.job_id}/retry")
        assert refused.status_code == 409 and "only dead jobs" in refused.json()["error"]


async def test_user_jobs_are_read_only_but_for_delete(admin: Browser, app: App, jobs: Jobs) -> None:
    dead = await jobs.boom.adelay()
    await adrain(app, queues=["default"])
    waiting = await jobs.ok.adelay()
    for job, action in ((dead, "retry"), (waiting, "cancel"), (dead, "cancel")):
        refused = await admin.post(f"/jobs/{job.job_id}/{action}")
        assert refused.status_code == 403, action
        assert "user job" in refused.json()["error"]
        assert "only delete" in refused.json()["error"]
    assert (await app.client.aget(dead.job_id)).status is JobStatus.DEAD  # type: ignore[union-attr]
    assert (await app.client.aget(waiting.job_id)).status is JobStatus.QUEUED  # type: ignore[union-attr]
    assert (await admin.delete(f"/jobs/{waiting.job_id}")).status_code == 200
    assert (await admin.get(f"/jobs/{dead.job_id}")).json()["job"]["kind"] == "user"


async def test_delete_a_job_but_not_a_running_one(admin: Browser, app: App, jobs: Jobs) -> None:
    done = await jobs.ok.adelay()
    response = await admin.delete(f"/jobs/{done.job_id}")
    assert response.status_code == 200
    assert response.json() == {"jobId": str(done.job_id), "deleted": True}
    assert await app.client.aget(done.job_id) is None
    slow = await jobs.slow.adelay()
    worker = asyncio.create_task(adrain(app, queues=["default"]))
    try:
        for _ in range(200):
            job = await app.client.aget(slow.job_id)
            if job is not None and job.status is JobStatus.RUNNING:
                break
            await asyncio.sleep(0.02)
        refused = await admin.delete(f"/jobs/{slow.job_id}")
        assert refused.status_code == 409 and "running" in refused.json()["error"]
    finally:
        jobs.gate.set()
        await worker
    assert await app.client.aget(slow.job_id) is not None


async def test_recurring_list_enable_disable_run(admin: Browser, app: App, jobs: Jobs) -> None:
    await app.client.aschedule_recurring("nightly", "0 2 * * *", "system.cleanup", {"days": 9})
    listed = (await admin.get("/recurring")).json()["recurring"]
    (nightly,) = listed
    assert nightly["name"] == "nightly" and nightly["jobType"] == "system.cleanup"
    assert nightly["kind"] == "system" and nightly["cron"] == "0 2 * * *"
    assert nightly["enabled"] is True and nightly["nextFireAt"] is not None
    assert msgspec.json.decode(nightly["argsJson"]) == {"days": 9}
    disabled = await admin.post("/recurring/nightly/disable")
    assert disabled.status_code == 200 and disabled.json()["enabled"] is False
    assert (await app.client.alist_recurring())[0].enabled is False
    enabled = await admin.post("/recurring/nightly/enable")
    assert enabled.status_code == 200 and enabled.json()["enabled"] is True
    run = await admin.post("/recurring/nightly/run")
    assert run.status_code == 200
    job = await app.client.aget(run.json()["jobId"])
    assert job is not None and job.job_type == "system.cleanup"
    for action in ("enable", "disable", "run"):
        missing = await admin.post(f"/recurring/nope/{action}")
        assert missing.status_code == 404 and "nope" in missing.json()["error"]


async def test_a_recurring_user_job_is_read_only(admin: Browser, app: App, jobs: Jobs) -> None:
    await app.client.aschedule_recurring("hourly", "0 * * * *", "reports.ok", {"n": 1})
    (listed,) = (await admin.get("/recurring")).json()["recurring"]
    assert listed["kind"] == "user"
    for action in ("enable", "disable", "run"):
        refused = await admin.post(f"/recurring/hourly/{action}")
        assert refused.status_code == 403, action
        assert "user jobs are read-only" in refused.json()["error"]
    assert await app.client.alist() == []
    assert (await app.client.alist_recurring())[0].enabled is True


async def test_a_recurring_job_this_process_does_not_define(
    store: Store, app: App, jobs: Jobs, config: WebConfig
) -> None:
    await app.client.aschedule_recurring("elsewhere", "0 * * * *", "system.cleanup", {})
    other = App(store.url, registry=Registry(), database_schema=store.schema, bind=False)
    browser = Browser(mounted(other, config))  # a web process serving a module without it
    try:
        await browser.login()
        (listed,) = (await browser.get("/recurring")).json()["recurring"]
        assert listed["kind"] is None
        for action in ("enable", "disable", "run"):
            refused = await browser.post(f"/recurring/elsewhere/{action}")
            assert refused.status_code == 409
            assert (
                "neither defined in this web process nor in the job-type catalogue"
                in (refused.json()["error"])
            )
    finally:
        await browser.aclose()
        await other.aclose()


async def test_queues_list_pause_resume(admin: Browser, app: App, jobs: Jobs) -> None:
    await jobs.ok.adelay()
    paused = await admin.post("/queues/reports/pause")
    assert paused.status_code == 200
    assert paused.json()["name"] == "reports" and paused.json()["paused"] is True
    assert paused.json()["counts"]["queued"] == 1
    listed = (await admin.get("/queues")).json()["queues"]
    assert any(q["name"] == "reports" and q["paused"] for q in listed)
    resumed = await admin.post("/queues/reports/resume")
    assert resumed.status_code == 200 and resumed.json()["paused"] is False
    bad = await admin.post("/queues/bad name!/pause")
    assert bad.status_code == 400 and "invalid queue name" in bad.json()["error"]


async def test_workers_live_and_gone(admin: Browser, app: App) -> None:
    from datetime import UTC, datetime

    from jobworker import WorkerInfo, WorkerRole

    storage = await app.storage()
    now = datetime.now(UTC)

    def row(id: str, role: WorkerRole, **fields: object) -> WorkerInfo:
        values: dict[str, object] = {
            "id": id, "host": "web-1", "pid": 4242, "role": role, "module": "app.jobs",
            "queues": ["default", "reports"], "slots": 8, "started_at": now,
            "last_heartbeat": now,
        }  # fmt: skip
        return WorkerInfo(**{**values, **fields})  # type: ignore[arg-type]

    await storage.workers.register(row("old-worker", WorkerRole.WORKER, pid=1))
    await asyncio.sleep(0.05)
    assert await storage.workers.mark_gone(0.01) == 1
    await storage.workers.register(row("sup-1", WorkerRole.SUPERVISOR, slots=8))
    await storage.workers.register(row("w-1", WorkerRole.WORKER, parent="sup-1"))
    assert await storage.workers.heartbeat("w-1", 3)
    listed = (await admin.get("/workers")).json()["workers"]
    by_id = {worker["id"]: worker for worker in listed}
    assert set(by_id) == {"old-worker", "sup-1", "w-1"}
    assert by_id["old-worker"]["gone"] is True
    assert by_id["w-1"]["running"] == 3 and by_id["w-1"]["parent"] == "sup-1"
    assert by_id["sup-1"]["running"] == 3 and by_id["sup-1"]["role"] == "supervisor"
    worker = by_id["w-1"]
    assert (worker["host"], worker["pid"], worker["module"]) == ("web-1", 4242, "app.jobs")
    assert worker["queues"] == ["default", "reports"] and worker["slots"] == 8
    assert worker["startedAt"] and worker["lastHeartbeat"]
    live = (await admin.get("/workers", include_gone="false")).json()["workers"]
    assert {worker["id"] for worker in live} == {"sup-1", "w-1"}
    stats = (await admin.get("/stats")).json()
    assert {worker["id"] for worker in stats["workers"]} == {"old-worker", "sup-1", "w-1"}
    assert (await admin.get("/workers", include_gone="maybe")).status_code == 400


async def test_unknown_routes_and_methods_answer_json(admin: Browser) -> None:
    missing = await admin.get("/nothing-here")
    assert missing.status_code == 404 and missing.json() == {"error": "no such route"}
    wrong = await admin.send("PUT", "/stats")
    assert wrong.status_code == 405 and wrong.json() == {"error": "method not allowed"}


async def test_the_read_only_role_reads_everything(viewer: Browser, jobs: Jobs) -> None:
    handle = await jobs.ok.adelay()
    for path in ("/stats", "/jobs", f"/jobs/{handle.job_id}", f"/jobs/{handle.job_id}/events",
                 "/recurring", "/queues", "/workers", "/session"):  # fmt: skip
        response = await viewer.get(path)
        assert response.status_code == 200, path
