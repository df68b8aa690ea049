"""The demo's jobs: a fast one, a flaky one that fails twice and then succeeds, and a slow one.

`App()` stores jobs in the embedded SQLite default (`jobworker.db` in the working directory, or
`JOBWORKER_DATABASE_URL`); short retry delays keep the demo quick.
"""

from __future__ import annotations

import asyncio

import msgspec

from jobworker import App, JobContext

app = App(retry_base_delay=0.5, retry_max_delay=1.0, poll_interval=0.2)


class Greeting(msgspec.Struct):
    text: str
    length: int


@app.job(name="demo.greet", display_name="Greet")
async def greet(ctx: JobContext, name: str) -> Greeting:
    """Fast: returns a typed result at once."""
    text = f"hello, {name}"
    return Greeting(text=text, length=len(text))


@app.job(name="demo.flaky", max_attempts=3)
def flaky(ctx: JobContext, service: str) -> str:
    """Fails on its first two attempts (a sync handler, run in a thread)."""
    if ctx.attempt < 3:
        raise ConnectionError(f"{service} is not answering (attempt {ctx.attempt})")
    return f"{service} answered on attempt {ctx.attempt}"


@app.job(name="demo.slow", timeout=30)
async def slow(ctx: JobContext, seconds: float) -> float:
    """Takes its time."""
    await asyncio.sleep(seconds)
    return seconds
