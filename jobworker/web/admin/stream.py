"""The admin API's live stream of one job (what the dashboard's live tail follows): the job
routes' SSE stream, served behind the admin session like every other admin route."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from jobworker.web.admin.endpoints import Endpoint, job_id_of
from jobworker.web.admin.responses import ApiError
from jobworker.web.fanout import StreamHub
from jobworker.web.sse import job_event_stream, last_event_id

__all__ = ["stream_endpoint"]


def stream_endpoint(hub: StreamHub) -> Endpoint:
    """`GET jobs/{id}/stream`: the job's events as SSE, resuming after `Last-Event-ID`."""

    async def stream(request: Request) -> Response:
        job_id = job_id_of(request)
        job = await hub.client.aget(job_id)
        if job is None:
            raise ApiError(404, f"no job with id {job_id}")
        try:
            after = last_event_id(request)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        return await job_event_stream(hub, job, after)

    return Endpoint(
        "GET",
        "/jobs/{id}/stream",
        stream,
        "Follow a job's events live (server-sent events; 204 once its end was seen)",
        None,
        errors=(400, 404),
        media_type="text/event-stream",
    )
