"""A FastAPI app that exports data in the background: the `202 Accepted` pattern.

    POST /exports                {"table": "users", "rows": 50}  ->  202 Accepted,
                                 Location: /exports/{id}, {"jobId": "...", "statusUrl": "..."}
    GET  /exports/{id}           where it stands: status, attempt, the result once done
                                 (200; `Retry-After` while it is not finished; 404 unless it is
                                 the caller's export)
    GET  /exports/{id}/stream    its events live, as server-sent events (`Last-Event-ID` resumes)
    /jobs-ui/...                 the admin API and dashboard of `jobworker web`, when
                                 JOBWORKER_WEB_ADMIN_PASSWORD_HASH is set

Who the caller is comes from a `user` cookie: a stand-in for your own authentication.
`jobs_lifespan` opens the job store when the app starts and closes it when it stops.

Run it from this directory, in two terminals (jobs go to JOBWORKER_DATABASE_URL, or to the
SQLite file jobworker.db here):

    uvicorn fastapi_app:api --timeout-graceful-shutdown 5
    jobworker run fastapi_app                 # the worker that builds the exports

    curl -si -X POST 127.0.0.1:8000/exports -b user=ada \\
         -H 'content-type: application/json' -d '{"table": "users"}'
    curl -s 127.0.0.1:8000/exports/JOB_ID -b user=ada
    curl -sN 127.0.0.1:8000/exports/JOB_ID/stream -b user=ada
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any

import msgspec
from fastapi import Cookie, Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from jobworker import App, JobContext, JobDescriptor, JobStatus, Registry
from jobworker.models import TERMINAL_STATUSES
from jobworker.web import sse
from jobworker.web.config import WebConfig
from jobworker.web.fanout import StreamHub
from jobworker.web.host import jobs_lifespan, web_tail

registry = Registry()


class Export(msgspec.Struct):
    table: str
    rows: int
    path: str


@registry.job(name="exports.table", max_attempts=3)
async def export_table(
    ctx: JobContext, owner: str, table: str, rows: int = 50, delay: float = 0.01
) -> Export:
    for n in range(1, rows + 1):
        await asyncio.sleep(delay)  # the real work: read a page, write it out
        if n % 10 == 0 or n == rows:
            await ctx.progress(n, rows, label=f"{n} of {rows} rows")
    await ctx.log.info("export written", table=table, rows=rows)
    return Export(table=table, rows=rows, path=f"exports/{owner}/{table}.csv")


class ExportRequest(BaseModel):
    table: str = Field(pattern=r"^[a-z_]{1,40}$")
    rows: int = Field(default=50, ge=1, le=10_000)


class ExportStatus(BaseModel):
    jobId: uuid.UUID
    status: JobStatus
    attempt: int
    maxAttempts: int
    result: dict[str, Any] | None = None
    error: str | None = None


def current_user(user: Annotated[str | None, Cookie()] = None) -> str:
    """Your authentication goes here."""
    if not user:
        raise HTTPException(401, "sign in first")
    return user


User = Annotated[str, Depends(current_user)]


def build_api(jobs: App, *, web_config: WebConfig | None = None) -> FastAPI:
    """The web app over `jobs` (where exports are enqueued and read)."""
    api = FastAPI(lifespan=jobs_lifespan(jobs))

    async def users_export(job_id: uuid.UUID, user: str) -> JobDescriptor:
        """The job if it is an export of this user; any other job is a 404, as if it did not
        exist (a 403 would tell that it does)."""
        job = await jobs.client.aget(job_id)
        if job is None or job.job_type != export_table.name or job.args.get("owner") != user:
            raise HTTPException(404, "no such export")
        return job

    @api.post("/exports", status_code=202)
    async def create_export(wanted: ExportRequest, user: User) -> JSONResponse:
        args = {"owner": user, "table": wanted.table, "rows": wanted.rows}
        handle = await jobs.client.aenqueue(export_table.name, args)
        status_url = f"/exports/{handle.job_id}"
        return JSONResponse(
            {"jobId": str(handle.job_id), "statusUrl": status_url},
            202,
            headers={"Location": status_url},
        )

    @api.get("/exports/{job_id}")
    async def export_status(job_id: uuid.UUID, user: User, response: Response) -> ExportStatus:
        job = await users_export(job_id, user)
        if job.status not in TERMINAL_STATUSES:
            response.headers["Retry-After"] = "1"  # when a poller should ask again
        return ExportStatus(
            jobId=job.job_id,
            status=job.status,
            attempt=job.attempt,
            maxAttempts=job.max_attempts,
            result=job.result if job.status is JobStatus.SUCCEEDED else None,
            error=job.error if job.status is JobStatus.DEAD else None,
        )

    @api.get("/exports/{job_id}/stream")
    async def follow_export(job_id: uuid.UUID, user: User, request: Request) -> Response:
        try:
            after = sse.last_event_id(request)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        job = await users_export(job_id, user)
        return await sse.job_event_stream(StreamHub.for_client(jobs.client), job, after)

    # The operators' admin API and dashboard (off until a password hash is configured).
    api.router.routes.append(web_tail(jobs, config=web_config))
    return api


jobs = App(registry=registry)
api = build_api(jobs)

if __name__ == "__main__":
    import uvicorn

    uvicorn.run(api, host="127.0.0.1", port=8000, timeout_graceful_shutdown=5)
