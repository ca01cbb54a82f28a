"""Starting the long-running processes from settings: the Celery workers of this node, and
Flower. Both end in an exec or a supervisor loop; the API is started by gunicorn itself."""

from __future__ import annotations

import os
import sys

import click

from attachd.cli.context import Context, pass_ctx


@click.command()
@click.option(
    "--pool",
    "pool_name",
    default=None,
    help="Run only this pool of ATTACHD_WORKER_POOLS (e.g. scan); default: all.",
)
@click.option("--name", default="", help="Added to node names, to run two nodes on one host.")
@click.option("--hostname", default=None, help="Celery node name (with --pool only).")
@pass_ctx
def worker(ctx: Context, pool_name: str | None, name: str, hostname: str | None) -> None:
    """Start the Celery workers of this node: one per pool, supervised."""
    from attachd.launch import check_pools, node_name, supervise, worker_argv

    s = ctx.settings
    pools = s.pools()
    check_pools(pools)
    if pool_name is not None:
        chosen = [p for p in pools if p.name == pool_name]
        if not chosen:
            raise click.UsageError(
                f"no pool {pool_name!r} in ATTACHD_WORKER_POOLS "
                f"({', '.join(p.name for p in pools)})"
            )
        argv = worker_argv(s, chosen[0], hostname or node_name(chosen[0], name))
        os.execv(argv[0], argv)  # noqa: S606 - argv from settings, no shell
    if hostname:
        raise click.UsageError("--hostname needs --pool; use --name to tell nodes apart")
    sys.exit(supervise({p.name: worker_argv(s, p, node_name(p, name)) for p in pools}))


@click.command()
@pass_ctx
def flower(ctx: Context) -> None:
    """Start Flower: persistent, with basic auth from settings."""
    from attachd.launch import flower_command

    argv, env = flower_command(ctx.settings)
    os.execve(argv[0], argv, env)  # noqa: S606 - argv from settings, no shell


COMMANDS: tuple[click.Command, ...] = (worker, flower)
