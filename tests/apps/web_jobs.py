"""A jobs module `jobworker web` serves in tests, with routes for `--routes web_jobs:routes`:
`/pid` (which process answered), `/counts` (reads the storage), `/client` (the address the
server sees) and `/forever` (a response that never ends, like a live stream); and for
`--routes web_jobs:open_job_routes`, the job routes with no authorization."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import BaseRoute, Route

from jobworker import App, JobContext, job
from jobworker.web.job_routes import allow_all, job_routes


@job(name="web.echo")
def echo(ctx: JobContext, text: str) -> str:
    return text


def routes(app: App) -> list[BaseRoute]:
    async def pid(request: Request) -> JSONResponse:
        return JSONResponse({"pid": os.getpid()})

    async def counts(request: Request) -> JSONResponse:
        counted = await app.client.acounts()
        return JSONResponse({status.value: n for status, n in counted.items()})

    async def client(request: Request) -> JSONResponse:
        return JSONResponse({"host": request.client.host if request.client else None})

    async def forever(request: Request) -> StreamingResponse:
        async def ticks() -> AsyncIterator[bytes]:
            while True:
                yield b": tick\n\n"
                await asyncio.sleep(0.2)

        return StreamingResponse(ticks(), media_type="text/event-stream")

    return [
        Route("/pid", pid),
        Route("/counts", counts),
        Route("/client", client),
        Route("/forever", forever),
    ]


def open_job_routes(app: App) -> list[BaseRoute]:
    return job_routes(app.client, authorize=allow_all)


not_routes = "a string"
