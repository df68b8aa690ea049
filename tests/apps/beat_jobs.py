"""Jobs for the beat tests: a per-second cron, a five-second one, a zoned nightly one."""

from __future__ import annotations

from jobworker import JobContext, job


@job(name="beat.every_second", kind="system", cron="* * * * * *")
def every_second(ctx: JobContext) -> None:
    return None


@job(name="beat.every_five", kind="system", cron="*/5 * * * * *")
def every_five(ctx: JobContext) -> None:
    return None


@job(name="beat.nightly", kind="system", cron="30 2 * * *", timezone="Europe/Amsterdam")
def nightly(ctx: JobContext, note: str = "nightly") -> str:
    return note


@job(name="beat.report")
def report(ctx: JobContext, to: str) -> str:
    return to
