"""What the web tests share: a job that emits every kind of event (optionally held at a gate
half-way), an authorization hook, a worker in this process, and a reader of SSE text."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from starlette.requests import Request

from jobworker import App, JobContext, Registry
from jobworker.models import JobDescriptor
from jobworker.worker import Worker, WorkerOptions, worker_id

from ..conftest import FAST, Store

registry = Registry()

# Gates a running job waits at, by name (the worker runs in the test's own event loop).
GATES: dict[str, asyncio.Event] = {}


class Step(msgspec.Struct):
    rows: int


class Summary(msgspec.Struct):
    owner: str
    rows: int
    note: str


@registry.job(name="web.every_kind", max_attempts=1)
async def every_kind(
    ctx: JobContext[Step],
    owner: str,
    rows: int = 3,
    gate: str | None = None,
    chunk_bytes: int = 0,
    note: str = "",
    pause: float = 0.0,
) -> Summary:
    """Each kind of event: logs, typed and counted progress, chunks, metrics, a result."""
    await ctx.log.info("starting", owner=owner)
    for n in range(1, rows + 1):
        if gate is not None and n == rows // 2 + 1:
            await GATES[gate].wait()
        await ctx.report(Step(rows=n))
        await ctx.progress(n, rows, label=f"row {n}")
        await ctx.chunk(f"line {n}\n" + "x" * chunk_bytes)
        await ctx.metric("rows", n)
        if pause:
            await asyncio.sleep(pause)
    await ctx.log.warn("done", rows=rows)
    return Summary(owner=owner, rows=rows, note=note)


def make_app(store: Store, redis_url: str | None = None, **settings: Any) -> App:
    options: dict[str, Any] = {**FAST, **settings}
    return App(
        store.url,
        registry=registry,
        database_schema=store.schema,
        redis_url=redis_url,
        redis_prefix=f"jw_test_{uuid.uuid4().hex[:10]}:",
        bind=False,
        **options,
    )


def owner_only(request: Request, job: JobDescriptor) -> bool:
    """The caller named in the X-User header sees the jobs whose `owner` argument names them."""
    return isinstance(job.args, dict) and job.args.get("owner") == request.headers.get("x-user")


@contextlib.asynccontextmanager
async def running_worker(app: App, parallelism: int = 4) -> AsyncIterator[Worker]:
    worker = Worker(app, WorkerOptions(worker_id=worker_id("web"), parallelism=parallelism))
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.request_stop()
        await asyncio.wait_for(task, 30)


class Sse(msgspec.Struct, frozen=True):
    """One server-sent event as a browser dispatches it (or a comment, or a retry hint)."""

    event: str = "message"
    id: str | None = None
    data: str = ""
    retry: int | None = None
    comment: str | None = None

    @property
    def json(self) -> Any:
        return msgspec.json.decode(self.data)


def parse_sse(text: str) -> list[Sse]:
    """The events, comments and retry hints of SSE text, in order."""
    found: list[Sse] = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        if not block.strip():
            continue
        fields: dict[str, Any] = {}
        data: list[str] = []
        for line in block.split("\n"):
            if line.startswith(":"):
                found.append(Sse(comment=line[1:].strip()))
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                data.append(value)
            elif name == "retry":
                fields["retry"] = int(value)
            elif name in ("event", "id"):
                fields[name] = value
        if data or fields:
            found.append(Sse(data="\n".join(data), **fields))
    return found


def job_events(parsed: list[Sse]) -> list[Sse]:
    """The job events among them (not comments, retry hints or reconnect notices)."""
    return [item for item in parsed if item.id is not None]


def seqs(parsed: list[Sse]) -> list[int]:
    return [int(item.id) for item in job_events(parsed) if item.id is not None]
