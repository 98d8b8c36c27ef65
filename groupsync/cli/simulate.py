"""``simulate``: the Graph simulator on a local port."""

from __future__ import annotations

from pathlib import Path

import click

from ..config import parse_rate
from ..errors import GroupsyncError
from ..simulator import SimulatorOptions, run_server
from .base import cli


@cli.command()
@click.option(
    "--data",
    type=click.Path(exists=True, file_okay=False),
    default="sample_data",
    show_default=True,
    help="Folder with the tenant (see sample_data/README.md).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8765, show_default=True, type=int, help="0 picks a free port.")
@click.option("--rate", "sim_rate", help="429 with Retry-After past N/SECONDS calls.")
@click.option("--fail-rate", default=0.0, type=click.FloatRange(0, 1), help="Random 503/504.")
@click.option(
    "--write-504-rate",
    default=0.0,
    type=click.FloatRange(0, 1),
    help="Apply a write, then answer 504 anyway.",
)
@click.option("--latency", default=0, type=click.IntRange(0), help="Milliseconds per request.")
@click.option("--max-concurrency", default=4, type=click.IntRange(0), help="0 = unlimited.")
@click.option("--page-size", default=10, type=click.IntRange(1), show_default=True)
@click.option("--max-top", default=50, type=click.IntRange(1), show_default=True)
@click.option("--thread-order", type=click.Choice(["newest", "random"]), default="newest")
@click.option("--empty-page-every", default=0, type=click.IntRange(0), help="Empty pages.")
@click.option("--truncate-posts-at", default=0, type=click.IntRange(0), help="Posts cap.")
@click.option("--seed", default=0, type=int, show_default=True)
@click.option("--persist", is_flag=True, help="Write changes back to --data.")
@click.option(
    "--mailbox-window",
    envvar="GROUPSYNC_SIM_MAILBOX_WINDOW",
    help="Graph's per-mailbox window as N/SECONDS (Graph: 10000/600) [env "
    "GROUPSYNC_SIM_MAILBOX_WINDOW; off].",
)
@click.option(
    "--concurrency-per",
    type=click.Choice(["app", "mailbox"]),
    default="app",
    show_default=True,
    help="Whether --max-concurrency counts for the app or for each mailbox.",
)
def simulate(data, host, port, sim_rate, mailbox_window, concurrency_per, **options):
    """Serve a tenant folder as Microsoft Graph v1.0 on a local port."""
    try:
        mailbox_rate = parse_rate(mailbox_window) if mailbox_window else None
    except GroupsyncError as ex:
        raise click.ClickException(f"--mailbox-window: {ex}") from None
    opts = SimulatorOptions(
        rate=parse_rate(sim_rate) if sim_rate else None,
        latency_ms=options.pop("latency"),
        mailbox_rate=mailbox_rate,
        concurrency_scope=concurrency_per,
        **options,
    )
    run_server(Path(data), host=host, port=port, options=opts)


