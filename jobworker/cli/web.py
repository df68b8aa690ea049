"""`jobworker web`: serve the web tail of a jobs module with uvicorn (needs the `web` extra)."""

from __future__ import annotations

import logging
import os
import sys

import click
import setproctitle

from jobworker.cli.common import BadInput, database_option, friendly_errors
from jobworker.errors import MissingExtraError

# What `pip install 'jobworker[web]'` brings that serving needs (uvloop is a core dependency).
WEB_EXTRA_MODULES = frozenset({"starlette", "uvicorn", "httptools"})


@click.command("web")
@click.argument("module", metavar="MODULE[:ATTR]")
@database_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option(
    "--prefix",
    default="/jobs-ui",
    show_default=True,
    help="Path everything is served under ('' for the root).",
)
@click.option(
    "--workers",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Server processes (uvicorn's multi-process mode when above 1).",
)
@click.option(
    "--routes",
    metavar="MODULE:ATTR",
    default=None,
    help="Extra Starlette routes to serve under the prefix: a list, or a function that takes "
    "the App and returns one (e.g. your job routes with their authorization hook).",
)
@click.option(
    "--proxy-headers",
    is_flag=True,
    help="Trust X-Forwarded-For/-Proto from --forwarded-allow-ips (behind a reverse proxy).",
)
@click.option(
    "--forwarded-allow-ips",
    default="127.0.0.1",
    show_default=True,
    metavar="IPS",
    help="Comma-separated addresses of the proxies whose headers --proxy-headers trusts.",
)
@click.option(
    "--graceful-timeout",
    type=click.IntRange(0),
    default=5,
    show_default=True,
    metavar="S",
    help="On SIGTERM, how long open responses (live streams) may go on before they are cut.",
)
@click.option("--access-log/--no-access-log", default=True, show_default=True)
@click.option(
    "--metrics/--no-metrics",
    default=None,
    help="Serve the Prometheus exposition at PREFIX/metrics, outside the admin login "
    "(default: on, or JOBWORKER_WEB_METRICS).",
)
def web(
    module: str,
    database_url: str | None,
    host: str,
    port: int,
    prefix: str,
    workers: int,
    routes: str | None,
    proxy_headers: bool,
    forwarded_allow_ips: str,
    graceful_timeout: int,
    access_log: bool,
    metrics: bool | None,
) -> None:
    """Serve the web tail (job routes, and later the admin API) of the App MODULE defines."""
    try:
        from jobworker.web.server import ServeOptions, WebTarget, serve
    except ImportError as exc:
        if exc.name in WEB_EXTRA_MODULES:
            raise BadInput(str(MissingExtraError(exc.name, "web"))) from None
        raise

    if os.getcwd() not in sys.path:  # MODULE is found where the command runs, as with `run`
        sys.path.insert(0, os.getcwd())
    if metrics is not None:  # through the environment: `--workers N` processes read it too
        os.environ["JOBWORKER_WEB_METRICS"] = "true" if metrics else "false"
    setproctitle.setproctitle(f"jobworker: web [{module}]")
    target = WebTarget(module=module, routes=routes, prefix=prefix, database_url=database_url)
    options = ServeOptions(
        host=host,
        port=port,
        workers=workers,
        proxy_headers=proxy_headers,
        forwarded_allow_ips=forwarded_allow_ips,
        graceful_timeout=graceful_timeout,
        access_log=access_log,
        log_level=logging.getLevelName(logging.getLogger().getEffectiveLevel()),
        log_format=_log_format(),
    )
    friendly_errors(serve)(target, options)


def _log_format() -> str:
    """The root group's --log-format, for uvicorn and its worker processes."""
    root = click.get_current_context().find_root()
    return str(root.params.get("log_format") or "text").lower()


COMMANDS = [web]
