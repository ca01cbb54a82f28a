"""The worker fleet: who is online and what each holds, draining a worker without losing work,
and putting it back to work."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from attachd.cli.context import Context, pass_ctx

if TYPE_CHECKING:
    from attachd.fleet import Fleet, WorkerState

# Seconds a drain or resume waits for a control reply: longer than status's default, since
# these act on one named worker and a missed reply would mean a wrong answer, not a short list.
CONTROL_TIMEOUT = 2.0


def _fleet(ctx: Context, timeout: float) -> Fleet:
    from attachd.fleet import Fleet
    from storage.broker import make_celery
    from storage.telemetry import Telemetry

    s = ctx.settings
    return Fleet(make_celery(s), Telemetry.from_url(s.redis_url), timeout=timeout)


@click.group()
def fleet() -> None:
    """Workers: what runs where and what each holds; draining one without losing work."""


@fleet.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--timeout", default=1.0, show_default=True, help="Seconds to wait for replies.")
@pass_ctx
def fleet_status(ctx: Context, as_json: bool, timeout: float) -> None:
    """Workers online, their queues, active and reserved tasks; queue depths."""
    from attachd.fleet import render

    status = _fleet(ctx, timeout).status()
    click.echo(json.dumps(status.to_dict(), indent=2) if as_json else render(status))


@fleet.command("drain")
@click.argument("worker")
@click.option(
    "--wait/--no-wait", default=True, show_default=True, help="Wait until the worker holds no task."
)
@click.option("--timeout", default=1800.0, show_default=True, help="Longest wait, in seconds.")
@click.option("--shutdown", is_flag=True, help="Then shut the worker down (warm).")
@pass_ctx
def fleet_drain(ctx: Context, worker: str, wait: bool, timeout: float, shutdown: bool) -> None:
    """Stop WORKER consuming, and let it finish what it has."""
    fl = _fleet(ctx, CONTROL_TIMEOUT)

    def progress(state: WorkerState) -> None:
        click.echo(
            f"{state.name}: {len(state.active)} running, {len(state.reserved)} reserved, "
            f"{len(state.scheduled)} scheduled",
            err=True,
        )

    stopped, state = fl.drain(worker, wait=wait, timeout=timeout, progress=progress)
    click.echo(f"{worker} stopped consuming {', '.join(stopped) or 'nothing'}", err=True)
    if wait and state.held:
        raise click.ClickException(f"{worker} still holds {state.held} task(s) after {timeout}s")
    if shutdown:
        fl.shutdown(worker)
        click.echo(f"{worker} asked to shut down", err=True)


@fleet.command("resume")
@click.argument("worker")
@click.option("--queue", "queues", multiple=True, help="Default: the queues it started with.")
@pass_ctx
def fleet_resume(ctx: Context, worker: str, queues: tuple[str, ...]) -> None:
    """Undo a drain: WORKER consumes its queues again."""
    resumed = _fleet(ctx, CONTROL_TIMEOUT).resume(worker, list(queues))
    click.echo(f"{worker} consuming {', '.join(resumed)}", err=True)


COMMANDS: tuple[click.Command, ...] = (fleet,)
