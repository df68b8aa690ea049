from jobworker import JobContext, job


@job(name="broken.never")
def never(ctx: JobContext) -> None: ...


raise RuntimeError("this module fails while being imported")
