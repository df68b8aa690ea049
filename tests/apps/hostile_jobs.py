"""A job whose every text carries terminal escape sequences: window title, screen clear, a bell,
a carriage return, DEL and a C1 control (CSI)."""

from __future__ import annotations

from jobworker import JobContext, job

HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x1b[H\rgone\x7f\x9b31m"


@job(name="hostile.echo", max_attempts=1)
def echo(ctx: JobContext, text: str) -> None:
    ctx.log.warn(f"log {text}", field=text)
    ctx.progress(1, 2, label=f"label {text}")
    ctx.chunk(f"chunk {text}\n")
    ctx.metric(f"metric{text}", 1.0)
    raise RuntimeError(f"error {text}")


@job(name="hostile.ok")
def ok(ctx: JobContext, text: str) -> str:
    ctx.chunk(f"chunk {text}\n")
    return f"result {text}"
