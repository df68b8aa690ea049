"""The reports app of reports_app.py, in FastAPI: the same job, the same authorization hook, the
job routes mounted into FastAPI's router.

Run it from this directory (and `jobworker run reports_app` for the worker):

    uvicorn fastapi_reports:api
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Cookie, FastAPI, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from reports_app import build_report, jobs, owns_report
from starlette.routing import Mount

from jobworker import App
from jobworker.web.fanout import StreamHub
from jobworker.web.host import jobs_lifespan
from jobworker.web.job_routes import job_routes


class ReportRequest(BaseModel):
    title: str
    rows: int = 20


def build_api(jobs: App) -> FastAPI:
    hub = StreamHub.for_client(jobs.client)

    api = FastAPI(lifespan=jobs_lifespan(jobs))  # opens the store, closes it and the hub

    @api.post("/reports", status_code=202)
    async def create_report(
        wanted: ReportRequest, user: Annotated[str | None, Cookie()] = None
    ) -> JSONResponse:
        if not user:
            raise HTTPException(401, "sign in first")
        args = {"owner": user, "title": wanted.title, "rows": wanted.rows}
        handle = await jobs.client.aenqueue(build_report.name, args)
        return JSONResponse(
            {"jobId": str(handle.job_id)}, 202, headers={"Location": f"/reports/{handle.job_id}"}
        )

    # GET /reports/{id}, /reports/{id}/stream, /reports/{id}/events (`app.mount` works too).
    routes = job_routes(jobs.client, authorize=owns_report, hub=hub)
    api.router.routes.append(Mount("/reports", routes=routes))
    return api


api = build_api(jobs)
