"""The `jobworker` command. The only composition root: it builds apps, workers and supervisors.

- `common`: loading the app, the shared `--app` / `--database-url` block, one-line errors.
- `format`: how things are printed (tables, a job as JSON, beat's status).
- `run`: `run` and `beat`; `jobs`: enqueue, status, jobs, cancel, retry, delete;
  `admin`: queues, recurring, migrate, sql; `tail`: following a job live; `workers`: the
  worker registry; `web`: serving the web tail with uvicorn; `web_auth`: hash-password, for
  the admin API's logins.
"""

from __future__ import annotations

import logging
import sys

import click

from jobworker._version import __version__
from jobworker.cli import admin, health, jobs, run, tail, web, web_auth, workers
from jobworker.display import EscapingFormatter

LOG_FORMAT = "%(asctime)s %(levelname)-7s [%(process)d] %(name)s: %(message)s"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="jobworker")
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    envvar="JOBWORKER_LOG_LEVEL",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
def main(log_level: str) -> None:
    """jobworker: durable, typed, streaming background jobs."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(EscapingFormatter(LOG_FORMAT))  # job text in log lines, escaped
    logging.basicConfig(level=log_level.upper(), handlers=[handler])


for command in [
    *run.COMMANDS,
    *jobs.COMMANDS,
    *admin.COMMANDS,
    tail.tail,
    workers.workers,
    health.health,
    *web.COMMANDS,
    *web_auth.COMMANDS,
]:
    main.add_command(command)

__all__ = ["main"]
