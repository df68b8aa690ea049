"""`jobworker hash-password`: the scrypt hash to configure an admin API password with."""

from __future__ import annotations

import sys

import click

from jobworker.cli.common import BadInput
from jobworker.errors import ConfigurationError
from jobworker.web.config import hash_password


@click.command("hash-password")
def hash_password_command() -> None:
    """Print the hash of a password for JOBWORKER_WEB_ADMIN_PASSWORD_HASH or
    JOBWORKER_WEB_READONLY_PASSWORD_HASH.

    The password is asked for twice at a terminal, or read as the first line of standard input
    (`jobworker hash-password < file`); never give it as an argument."""
    if sys.stdin.isatty():
        plain = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        plain = sys.stdin.readline().rstrip("\r\n")
    try:
        click.echo(hash_password(plain))
    except ConfigurationError as exc:
        raise BadInput(str(exc)) from None


COMMANDS = [hash_password_command]
