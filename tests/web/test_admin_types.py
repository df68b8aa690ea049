"""`GET /types`: the job-type catalogue through the admin API, and the kind rules of a web
process that does not import the job modules (it reads the kinds from the catalogue)."""

from __future__ import annotations

import os

from jobworker import App, Registry
from jobworker.catalogue import record_job_types
from jobworker.testing import adrain
from jobworker.web.config import WebConfig

from ..conftest import Store
from .admin_support import (  # noqa: F401 (fixtures)
    Browser,
    Jobs,
    admin,
    app,
    config,
    jobs,
    mounted,
    site,
)


async def test_types_lists_what_a_worker_declared_when_it_started(
    admin: Browser, app: App, jobs: Jobs
) -> None:
    assert (await admin.get("/types")).json() == {"types": []}
    await adrain(app, queues=["default"])  # a worker starts: it writes its types
    listed = (await admin.get("/types")).json()["types"]
    assert [t["name"] for t in listed] == sorted(jobs.registry.names())
    (ok,) = [t for t in listed if t["name"] == "reports.ok"]
    assert (ok["kind"], ok["displayName"], ok["icon"], ok["queue"]) == (
        "user",
        "reports.ok",
        None,
        "reports",
    )
    assert ok["isAsync"] is True and ok["cron"] is None
    assert ok["module"] == "tests.web.admin_support"
    assert set(ok["argsSchema"]["$defs"]["reports_ok_args"]["properties"]) == {"n", "note"}
    (cleanup,) = [t for t in listed if t["name"] == "system.cleanup"]
    assert cleanup["kind"] == "system"
    assert f":{os.getpid()}:drain:" in ok["seenBy"]  # the drain's worker id
    assert ok["firstSeen"] == ok["lastSeen"]


async def test_a_web_process_without_the_jobs_takes_their_kind_from_the_catalogue(
    store: Store, app: App, jobs: Jobs, config: WebConfig
) -> None:
    await app.client.aschedule_recurring("elsewhere", "0 * * * *", "system.cleanup", {})
    await app.client.aschedule_recurring("hourly", "0 * * * *", "reports.ok", {"n": 1})
    storage = app.create_storage()
    await storage.open()
    try:
        assert await record_job_types(storage, jobs.registry, app.settings, "beat-test")
    finally:
        await storage.close()
    other = App(store.url, registry=Registry(), database_schema=store.schema, bind=False)
    browser = Browser(mounted(other, config))  # a web process serving a module without them
    try:
        await browser.login()
        listed = (await browser.get("/recurring")).json()["recurring"]
        assert {r["name"]: r["kind"] for r in listed} == {"elsewhere": "system", "hourly": "user"}
        assert (await browser.post("/recurring/elsewhere/disable")).json()["enabled"] is False
        assert (await browser.post("/recurring/elsewhere/enable")).json()["enabled"] is True
        # Running needs the job's code (its arguments are checked against its signature).
        run = await browser.post("/recurring/elsewhere/run")
        assert run.status_code == 409 and "system.cleanup" in run.json()["error"], run.json()
        refused = await browser.post("/recurring/hourly/run")
        assert refused.status_code == 403 and "user jobs are read-only" in refused.json()["error"]
    finally:
        await browser.aclose()
        await other.aclose()


async def test_types_is_in_the_openapi_document(admin: Browser) -> None:
    document = (await admin.get("/openapi.json")).json()
    operation = document["paths"]["/types"]["get"]
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/JobTypeList"
    }
