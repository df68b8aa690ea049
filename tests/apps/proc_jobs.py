"""Jobs for the process tests: each execution is recorded outside the jobs table."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from jobworker import JobContext, job

_hoard: list[bytes] = []


def record(ctx: JobContext) -> None:
    log = os.environ.get("EXEC_LOG")
    if log:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{ctx.job_id} {ctx.attempt} {os.getpid()}\n".encode())
        finally:
            os.close(fd)


@job(name="proc.noop")
async def noop(ctx: JobContext, i: int = 0) -> None:
    record(ctx)


@job(name="proc.sync_noop")
def sync_noop(ctx: JobContext, i: int = 0) -> None:
    record(ctx)


@job(name="proc.pid")
def pid(ctx: JobContext, i: int = 0) -> int:
    record(ctx)
    return os.getpid()


@job(name="proc.flaky", max_attempts=3)
async def flaky(ctx: JobContext) -> str:
    record(ctx)
    if ctx.attempt < 3:
        raise ConnectionError(f"attempt {ctx.attempt} failed")
    return "third time lucky"


@job(name="proc.always_fails", max_attempts=2)
def always_fails(ctx: JobContext) -> None:
    record(ctx)
    raise RuntimeError("this job always fails")


@job(name="proc.sleepy")
async def sleepy(ctx: JobContext, seconds: float, marker: str, only_first: bool = False) -> int:
    """Writes its pid to `marker`, then sleeps (only on the first attempt if only_first)."""
    record(ctx)
    write_marker(marker)
    if not only_first or ctx.attempt == 1:
        await asyncio.sleep(seconds)
    return ctx.attempt


@job(name="proc.blocker")
async def blocker(ctx: JobContext, seconds: float) -> int:
    """Blocks its worker's event loop on the first attempt (a stuck process)."""
    record(ctx)
    if ctx.attempt == 1:
        time.sleep(seconds)  # noqa: ASYNC251 - blocking the loop is the point
    return ctx.attempt


@job(name="proc.hog")
def hog(ctx: JobContext, megabytes: int) -> int:
    record(ctx)
    _hoard.append(os.urandom(megabytes * 1024 * 1024))
    return os.getpid()


@job(name="proc.chatty_crash", max_attempts=2)
async def chatty_crash(ctx: JobContext, marker: str) -> int:
    """Streams 50 chunks per attempt; the first attempt then waits to be killed."""
    for n in range(50):
        await ctx.chunk(f"a{ctx.attempt}-{n}")
    if ctx.attempt == 1:
        await asyncio.sleep(0.5)  # the chunks reach Redis
        write_marker(marker)
        await asyncio.sleep(60)
    return ctx.attempt


@job(name="proc.steady", max_attempts=3)
async def steady(ctx: JobContext, seconds: float, marker: str) -> int:
    """Reports progress (its attempt) every 50 ms for `seconds`; writes its pid to `marker`."""
    record(ctx)
    write_marker(marker)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await ctx.report({"attempt": ctx.attempt})
        await asyncio.sleep(0.05)
    return ctx.attempt


def write_marker(marker: str) -> None:
    """Write this process's pid to `marker` whole: a reader that sees the file sees the pid
    (a plain write_text lets it see an empty file first)."""
    partial = Path(f"{marker}.partial")
    partial.write_text(str(os.getpid()))
    partial.rename(marker)
