"""A Starlette app whose users build reports in the background and follow them live.

    POST /reports                {"title": "Q3", "rows": 20}  ->  202 Accepted,
                                 Location: /reports/{id}, {"jobId": "..."}
    GET  /reports/{id}           the job as JSON (404 unless it is the caller's report)
    GET  /reports/{id}/stream    its events, as server-sent events
    GET  /reports/{id}/events    its kept events, a page at a time (?after_sequence=&limit=)
    GET  /                       a page that starts a report and follows it with EventSource

Who the caller is comes from a `user` cookie: a stand-in for your own authentication (a session,
a signed token). A user sees only the reports whose `owner` argument names them; any other job
is a 404, as if it did not exist.

Run it from this directory, in two terminals (jobs go to JOBWORKER_DATABASE_URL, or to the
SQLite file jobworker.db here):

    uvicorn reports_app:app                  # then open http://127.0.0.1:8000/
    jobworker run reports_app                # the worker that builds the reports

    curl -si -X POST 127.0.0.1:8000/reports -b user=ada \\
         -H 'content-type: application/json' -d '{"title": "Q3"}'
    curl -sN 127.0.0.1:8000/reports/JOB_ID/stream -b user=ada
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route

from jobworker import App, JobContext, Registry
from jobworker.errors import JobArgumentsError
from jobworker.models import JobDescriptor
from jobworker.web.fanout import StreamHub
from jobworker.web.host import jobs_lifespan
from jobworker.web.job_routes import job_routes

registry = Registry()


class Report(msgspec.Struct):
    owner: str
    title: str
    rows: int


@registry.job(name="reports.build", max_attempts=3)
async def build_report(
    ctx: JobContext, owner: str, title: str, rows: int = 20, delay: float = 0.05
) -> Report:
    """Every kind of event a page can show: logs, progress, chunks of output, a metric."""
    await ctx.log.info("building report", title=title, rows=rows)
    for n in range(1, rows + 1):
        await asyncio.sleep(delay)  # the real work
        await ctx.chunk(f"{title}: row {n}\n")
        await ctx.metric("rows_done", n)
        await ctx.progress(n, rows, label=f"{n} of {rows} rows")
    await ctx.log.warn("report built", rows=rows)
    return Report(owner=owner, title=title, rows=rows)


class ReportRequest(msgspec.Struct, forbid_unknown_fields=True):
    title: str
    rows: int = 20


def current_user(request: Request) -> str | None:
    """Your authentication goes here."""
    return request.cookies.get("user") or None


def owns_report(request: Request, job: JobDescriptor) -> bool:
    """The authorization hook of the job routes: reports of the caller only."""
    user = current_user(request)
    return (
        user is not None
        and job.job_type == build_report.name
        and isinstance(job.args, dict)
        and job.args.get("owner") == user
    )


def build_app(jobs: App) -> Starlette:
    """The web app over `jobs` (where reports are enqueued and read)."""
    hub = StreamHub.for_client(jobs.client)

    async def create_report(request: Request) -> Response:
        user = current_user(request)
        if user is None:
            return JSONResponse({"error": "sign in first"}, 401)
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return JSONResponse({"error": "send the report as application/json"}, 415)
        try:
            wanted = msgspec.json.decode(await request.body(), type=ReportRequest)
            args: dict[str, Any] = {"owner": user, "title": wanted.title, "rows": wanted.rows}
            handle = await jobs.client.aenqueue(build_report.name, args)
        except (msgspec.ValidationError, msgspec.DecodeError, JobArgumentsError) as exc:
            return JSONResponse({"error": str(exc)}, 400)
        return JSONResponse(
            {"jobId": str(handle.job_id)},
            202,
            headers={"Location": f"/reports/{handle.job_id}"},
        )

    async def page(request: Request) -> Response:
        return HTMLResponse(PAGE)

    return Starlette(
        routes=[
            Route("/", page),
            Route("/reports", create_report, methods=["POST"]),
            Mount("/reports", routes=job_routes(jobs.client, authorize=owns_report, hub=hub)),
        ],
        lifespan=jobs_lifespan(jobs),  # opens the store, closes it and the stream hub
    )


# The reference's browser snippet, as it is (only the lifecycle listener records the status).
PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Reports</title></head>
<body>
  <input id="title" value="Quarterly"> <button id="start">Build report</button>
  <p>Status: <span id="status">-</span></p>
  <progress max="1" value="0"></progress> <span id="label"></span>
  <p>Rows done: <span data-metric="rows_done">0</span></p>
  <pre id="output"></pre>
  <pre id="result"></pre>
<script>
const progressBar = document.querySelector('progress');
const progressLabel = document.getElementById('label');
const output = document.getElementById('output');
const statuses = [];
function showResult(result) {
  document.getElementById('result').textContent = JSON.stringify(result);
}

function follow(jobId) {
const es = new EventSource(`/reports/${jobId}/stream`);
es.addEventListener('lifecycle', e => { const { status } = JSON.parse(e.data); statuses.push(status); document.getElementById('status').textContent = status; });
es.addEventListener('progress', e => { const { done, total, label } = JSON.parse(e.data); progressBar.value = done / total; progressLabel.textContent = label; });
es.addEventListener('log', e => { const { level, message, dataJson } = JSON.parse(e.data); console[level.toLowerCase()](`[${level}] ${message}`, dataJson ? JSON.parse(dataJson) : ''); });
es.addEventListener('chunk', e => { const { value } = JSON.parse(e.data); output.textContent += value; });
es.addEventListener('metric', e => { const { name, value } = JSON.parse(e.data); document.querySelector(`[data-metric="${name}"]`).textContent = value; });
es.addEventListener('result', e => { const { resultJson } = JSON.parse(e.data); showResult(JSON.parse(resultJson)); es.close(); });
}

document.getElementById('start').addEventListener('click', async () => {
  const response = await fetch('/reports', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ title: document.getElementById('title').value }),
  });
  const { jobId } = await response.json();
  follow(jobId);
});
</script>
</body>
</html>
"""

jobs = App(registry=registry)
app = build_app(jobs)

if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=8000)
