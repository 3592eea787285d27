"""``newsletter subscribers``: add, import, list, export, delete, erase, purge pending signups."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.table import Table

from kernel import utcnow
from newsletter.cli.context import Context, count_lines, pass_context
from newsletter.cli.progress import Bars
from newsletter.services import privacy, stats
from newsletter.services import subscribers as listing
from subscribers.formats import ImportFormat
from subscribers.model import SubscriberStatus
from subscribers.transfer import ImportReport


@click.group()
def subscribers() -> None:
    """The subscriber list."""


@subscribers.command("add")
@click.argument("email")
@click.option("--confirmed", is_flag=True, help="Add as confirmed (consent obtained elsewhere).")
@click.option("--name", help="Display name.")
@click.option("--timezone", help="IANA time zone, e.g. Europe/Berlin.")
@pass_context
def subscribers_add(
    context: Context, email: str, confirmed: bool, name: str | None, timezone: str | None
) -> None:
    """Add one subscriber."""
    app = context.app
    added = listing.add(
        app.database,
        signer=app.signer(),
        email=email,
        name=name,
        timezone=timezone,
        confirmed=confirmed,
        source="cli",
        now=utcnow(),
    )
    status, address = added.subscriber.status.value, added.subscriber.email
    if added.created:
        context.console.print(f"Added {address} ({status}).")
    else:
        context.console.print(f"{address} is already on the list ({status}); nothing changed.")


@subscribers.command("import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--from",
    "source_format",
    type=click.Choice([choice.value for choice in ImportFormat]),
    default=ImportFormat.AUTO.value,
    show_default=True,
    help="The tool the file was exported from; auto tells it by the header row, csv is "
    "this newsletter's own format (email[,name,timezone]).",
)
@click.option(
    "--confirmed",
    is_flag=True,
    help="Import plain CSV rows as confirmed (consent obtained elsewhere); another tool's export "
    "keeps the status it gives.",
)
@pass_context
def subscribers_import(context: Context, file: Path, source_format: str, confirmed: bool) -> None:
    """Import subscribers from a CSV file with an 'email' column (optional: name, timezone), or
    from the subscriber export of Mailchimp, Substack, beehiiv, listmonk or Buttondown.

    Who left, bounced or complained there is suppressed here, never confirmed; a re-import of the
    same file changes nothing.
    """
    report = _import(context, file, confirmed=confirmed, source_format=ImportFormat(source_format))
    _print_import(context, report)
    if report.rejected and not (report.rows - len(report.rejected)):
        sys.exit(1)


def _import(
    context: Context, file: Path, *, confirmed: bool, source_format: ImportFormat
) -> ImportReport:
    app = context.app
    with Bars(context.err) as bars:
        return listing.import_csv(
            app.database,
            file,
            settings=app.settings,
            confirmed=confirmed,
            source=f"import:{file.name}",
            source_format=source_format,
            now=None,
            progress=bars.counter("Importing", count_lines(file)),
        )


def _print_import(context: Context, report: ImportReport) -> None:
    table = Table(title=f"Import summary ({report.format})", show_header=False)
    table.add_row("added", str(report.added))
    table.add_row("  confirmed", str(report.confirmed))
    table.add_row("  pending (to confirm)", str(report.pending))
    table.add_row(
        "suppressed now (left, bounced or complained there)", str(report.newly_suppressed)
    )
    table.add_row("unchanged", str(report.unchanged))
    table.add_row("  already present", str(report.already_present))
    table.add_row("  suppressed (left earlier, not re-added)", str(report.suppressed))
    table.add_row("rejected", str(len(report.rejected)))
    context.console.print(table)
    for row in report.rejected:
        context.err.print(f"line {row.line}: {row.value or '(empty)'}: {row.reason}", markup=False)


@subscribers.command("list")
@click.option(
    "--status",
    type=click.Choice([status.value for status in SubscriberStatus]),
    help="Only subscribers with this status.",
)
@pass_context
def subscribers_list(context: Context, status: str | None) -> None:
    """List subscribers (email, status, time zone), then the count per status."""
    chosen = SubscriberStatus(status) if status else None
    for subscriber in listing.each(context.app.database, status=chosen):
        click.echo(f"{subscriber.email}\t{subscriber.status.value}\t{subscriber.timezone or '-'}")
    counts = stats.overview(context.app.database).subscribers
    summary = ", ".join(f"{count} {state.value}" for state, count in counts.items() if count)
    context.err.print(f"{sum(counts.values())} subscribers ({summary or 'none'})")


@subscribers.command("export")
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path, dir_okay=False),
    help="File (default: stdout).",
)
@click.option(
    "--status",
    type=click.Choice([status.value for status in SubscriberStatus]),
    help="Only subscribers with this status.",
)
@pass_context
def subscribers_export(context: Context, output: Path | None, status: str | None) -> None:
    """Export subscribers as CSV (email, name, status, timezone, created_at, confirmed_at)."""
    chosen = SubscriberStatus(status) if status else None
    database = context.app.database
    if output is None:
        written = listing.export_to(database, sys.stdout, status=chosen)
    else:
        with output.open("w", encoding="utf-8", newline="") as handle:
            written = listing.export_to(database, handle, status=chosen)
    context.err.print(f"Exported {written} subscribers{f' to {output}' if output else ''}.")


@subscribers.command("delete")
@click.argument("email")
@pass_context
def subscribers_delete(context: Context, email: str) -> None:
    """Delete one subscriber (an address that ever left stays suppressed, as a hash)."""
    removal = listing.delete_address(context.app.database, email, now=utcnow())
    kept = "; its hash keeps it suppressed" if removal.suppressed else ""
    context.console.print(f"Deleted {email}{kept}.")


@subscribers.command("erase")
@click.argument("email")
@pass_context
def subscribers_erase(context: Context, email: str) -> None:
    """Erase everything held about an address (right to erasure); only its hash stays."""
    removal = privacy.erase_address(context.app.database, email, now=utcnow())
    held = "its data, deliveries and reports removed" if removal.found else "it was not on the list"
    context.console.print(f"Erased {email} ({held}); its hash keeps it suppressed.")


@subscribers.command("purge-pending")
@click.option("--dry-run", is_flag=True, help="Count what would be purged; change nothing.")
@pass_context
def subscribers_purge_pending(context: Context, dry_run: bool) -> None:
    """Purge signups never confirmed within the confirmation window plus the grace period."""
    settings = context.app.settings
    count = context.app.pending_signups.purge(now=utcnow(), dry_run=dry_run)
    noun = f"{count} pending signup{'s' if count != 1 else ''}"
    days = f"{settings.confirm_token_hours} hours + {settings.pending_grace_days} days"
    if dry_run:
        context.console.print(f"{noun} would be purged (unconfirmed for over {days}).")
    else:
        context.console.print(f"Purged {noun} (unconfirmed for over {days}).")
