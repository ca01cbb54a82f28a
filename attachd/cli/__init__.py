"""The `attachd` command: set-up, tenants and access tokens, uploads and pipeline operations,
the worker fleet, and starting workers and Flower.

Output meant for scripts (a new token id) goes alone on stdout; everything else is for people.
Each command group lives in its own module; this one assembles them and turns the project's
errors into an exit code, in one place.
"""

from __future__ import annotations

import sys

import click

from attachd.cli import (
    config,
    fleet,
    processes,
    provision,
    quarantine,
    tokens,
    uploads,
    webhook,
)
from core.errors import AttachdError


@click.group()
def cli() -> None:
    """attachd: upload pipeline for profile attachments (Crafter Profile compatible)."""


for _command in (
    *provision.COMMANDS,
    *tokens.COMMANDS,
    *uploads.COMMANDS,
    *quarantine.COMMANDS,
    *fleet.COMMANDS,
    *processes.COMMANDS,
    *config.COMMANDS,
    *webhook.COMMANDS,
):
    cli.add_command(_command)


def main() -> None:
    """The console script. Click's own errors (usage, `ClickException`) exit as click decides,
    code 2 and 1; any error of ours is one line on stderr and exit code 1."""
    try:
        cli(standalone_mode=True)
    except AttachdError as exc:
        click.echo(f"attachd: {exc}", err=True)
        sys.exit(1)
