"""Administration commands: queues, recurring jobs, the schema (migrate, sql)."""

from __future__ import annotations

import asyncio

import click

from jobworker.app import App
from jobworker.cli.common import BadInput, Target, friendly_errors, name_command, target_options
from jobworker.cli.format import format_queues, format_recurring
from jobworker.cli.unserved import warn_unserved_queued
from jobworker.client import Client
from jobworker.storage import DIALECTS, schema_sql


@click.group()
def queues() -> None:
    """List, pause and resume queues."""


@queues.command("list")
@target_options
def queues_list(target: Target) -> None:
    """Every queue with its job counts and whether it is paused."""

    def listing(client: Client) -> None:
        click.echo(format_queues(client.queues()))
        warn_unserved_queued(client)

    target.call(listing)


name_command(
    queues,
    "pause",
    "Stop every worker claiming from queue NAME (running jobs carry on).",
    Client.pause_queue,
    "queue {} paused",
)
name_command(
    queues,
    "resume",
    "Let workers claim from queue NAME again.",
    Client.resume_queue,
    "queue {} resumed",
)


@click.group()
def recurring() -> None:
    """List, enable, disable and run recurring (cron) jobs."""


@recurring.command("list")
@target_options
def recurring_list(target: Target) -> None:
    """Every recurring job with its schedule and its last and next fire."""
    click.echo(format_recurring(target.call(lambda client: client.list_recurring())))


name_command(
    recurring,
    "enable",
    "Fire recurring job NAME again, from its next scheduled time.",
    Client.enable_recurring,
    "recurring job {} enabled",
)
name_command(
    recurring,
    "disable",
    "Stop firing recurring job NAME (it stays disabled when beat restarts).",
    Client.disable_recurring,
    "recurring job {} disabled",
)


@recurring.command("run")
@click.argument("name")
@target_options
def recurring_run(name: str, target: Target) -> None:
    """Enqueue recurring job NAME's job now, once; prints its id."""
    if not target.app_path:
        raise BadInput("run needs the job definitions: pass --app MODULE or set JOBWORKER_APP")
    handle = target.call(lambda client: client.run_recurring(name))
    click.echo(str(handle.job_id))


@click.command()
@target_options
@click.option(
    "--schema",
    default=None,
    help="PostgreSQL schema (default: the database_schema setting, jobworker).",
)
def migrate(target: Target, schema: str | None) -> None:
    """Create or upgrade the jobworker schema in the database."""
    app = target.load()
    if schema:
        app = app.with_settings(app.settings.replace(database_schema=schema))
    applied = asyncio.run(_migrate(app))
    where = app.dialect
    if where == "sqlite":
        click.echo("sqlite: the schema is ready (SQLite creates and upgrades it on first use)")
        return
    where += f" (schema {app.settings.database_schema})"
    if applied:
        click.echo(f"applied schema version(s) {', '.join(map(str, applied))} to {where}")
    else:
        click.echo(f"{where}: the schema is up to date")


async def _migrate(app: App) -> list[int]:
    storage = app.create_storage()
    await storage.open()
    try:
        return await storage.schema.migrate()
    finally:
        await storage.close()


@click.command("sql")
@click.option("--dialect", type=click.Choice(DIALECTS), required=True)
@click.option("--schema", default="jobworker", show_default=True, help="PostgreSQL schema name.")
@friendly_errors
def sql_command(dialect: str, schema: str) -> None:
    """Print the schema scripts, for your own migration tool (Alembic, Django, Flyway...)."""
    for version, name, text in schema_sql(dialect, schema):
        click.echo(f"-- jobworker schema version {version} ({name})")
        click.echo(text.rstrip() + "\n")


COMMANDS = [queues, migrate, sql_command, recurring]
