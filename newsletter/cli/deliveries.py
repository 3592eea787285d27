"""``newsletter deliveries``: the ledger's retention."""

from __future__ import annotations

import click

from kernel import utcnow
from newsletter.cli.context import Context, pass_context, retention_options


@click.group()
def deliveries() -> None:
    """The deliveries ledger: retention of old rows."""


@deliveries.command("prune")
@retention_options("Prune the rows of editions dated more than DAYS days ago.")
@pass_context
def deliveries_prune(context: Context, days: int, dry_run: bool) -> None:
    """Delete the ledger rows of old editions that are over (sent or cancelled).

    The editions, the archive, bounce reports and every subscriber's status stay; the delivery
    counts stay equal to the ledger.
    """
    pruned = context.app.editions.prune_deliveries(
        older_than_days=days, now=utcnow(), dry_run=dry_run
    )
    rows = f"{pruned.deliveries:,} deliver{'ies' if pruned.deliveries != 1 else 'y'}"
    editions = f"{pruned.editions} edition{'s' if pruned.editions != 1 else ''}"
    scope = f"dated before {pruned.before}"
    if dry_run:
        context.console.print(f"{rows} of {editions} {scope} would be pruned.")
    else:
        context.console.print(f"Pruned {rows} of {editions} {scope}.")
