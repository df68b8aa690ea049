"""A module with its own App whose first job enqueues the second with `.delay()`."""

from __future__ import annotations

from jobworker import App, JobContext, Registry

registry = Registry()
app = App(registry=registry, poll_interval=0.05)  # the embedded default, in the working directory


@app.job(name="chain.first")
def first(ctx: JobContext) -> None:
    second.delay()


@app.job(name="chain.second")
def second(ctx: JobContext) -> None: ...
