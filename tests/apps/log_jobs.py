"""Jobs for the log tests: each logs through `ctx.logger` and through the `logging` module, one
fails, one times out; the App's `on_error` hook appends what it got to $ERROR_LOG (JSON lines)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time

from jobworker import App, JobContext, Registry

registry = Registry()

plain = logging.getLogger("log_jobs")


def on_error(exc: BaseException, ctx: JobContext) -> None:
    path = os.environ.get("ERROR_LOG")
    if not path:
        return
    line = {
        "type": type(exc).__name__,
        "message": str(exc),
        "timeout": isinstance(exc, TimeoutError),
        "job_id": str(ctx.job_id),
        "job_type": ctx.job_type,
        "attempt": ctx.attempt,
        "pid": os.getpid(),
    }
    with open(path, "a") as log:
        log.write(json.dumps(line) + "\n")


app = App(registry=registry, on_error=on_error)


@app.job(name="logs.sync_talk")
def sync_talk(ctx: JobContext, word: str) -> str:
    ctx.logger.info("ctx logger says %s", word)
    plain.info("plain logging says %s", word)
    return word


@app.job(name="logs.async_talk", queue="chatty")
async def async_talk(ctx: JobContext, word: str) -> str:
    ctx.logger.info("ctx logger says %s", word)
    plain.info("plain logging says %s", word)
    return word


@app.job(name="logs.fails", max_attempts=2)
def fails(ctx: JobContext) -> None:
    plain.warning("about to fail")
    raise ValueError(f"attempt {ctx.attempt} went wrong")


@app.job(name="logs.too_slow", timeout=0.3, max_attempts=1)
async def too_slow(ctx: JobContext) -> None:
    await asyncio.sleep(30)


@app.job(name="logs.too_slow_sync", timeout=0.3, max_attempts=1)
def too_slow_sync(ctx: JobContext) -> None:
    while not ctx.cancel_requested:
        time.sleep(0.02)
