"""The `jobworker` command. The only composition root: it builds apps, workers and supervisors.

- `common`: loading the app, the shared `--app` / `--database-url` block, one-line errors.
- `format`: how things are printed (tables, a job as JSON, beat's status).
- `run`: `run` and `beat`; `jobs`: enqueue, status, jobs, cancel, retry, delete;
  `admin`: queues, recurring, migrate, sql; `tail`: following a job live; `workers`: the
  worker registry; `job_types`: the job-type catalogue (`types`); `web`: serving the web tail
  with uvicorn; `web_auth`: hash-password, for the admin API's logins.
"""

from __future__ import annotations

import click

from jobworker._version import __version__
from jobworker.cli import admin, health, job_types, jobs, run, tail, web, web_auth, workers
from jobworker.logs import FORMATS, configure


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="jobworker")
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    envvar="JOBWORKER_LOG_LEVEL",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
@click.option(
    "--log-format",
    default="text",
    show_default=True,
    envvar="JOBWORKER_LOG_FORMAT",
    type=click.Choice(FORMATS, case_sensitive=False),
    help="text: one escaped line a record; json: one JSON object a line, with the job's "
    "id, type, attempt, queue, worker and trace id where known (docs/logging.md).",
)
def main(log_level: str, log_format: str) -> None:
    """jobworker: durable, typed, streaming background jobs."""
    # Every command logs this way, and so do the processes `run` forks and `web`'s uvicorn.
    configure(log_level, log_format.lower())


for command in [
    *run.COMMANDS,
    *jobs.COMMANDS,
    *admin.COMMANDS,
    tail.tail,
    workers.workers,
    job_types.types,
    health.health,
    *web.COMMANDS,
    *web_auth.COMMANDS,
]:
    main.add_command(command)

__all__ = ["main"]
