from __future__ import annotations

from jobworker import JobContext, job


@job(name="tail.steps")
def steps(ctx: JobContext, rows: int = 3) -> dict[str, int]:
    ctx.log.info("exporting", rows=rows)
    for n in range(1, rows + 1):
        ctx.progress(n, rows, label="rows")
        ctx.chunk(f"row{n} ")
    ctx.metric("rows_per_second", 12.5)
    return {"rows": rows}


@job(name="tail.fails", max_attempts=1)
async def fails(ctx: JobContext) -> None:
    await ctx.log.error("giving up", code=7)
    raise RuntimeError("no luck")
