"""``newsletter sponsors``: add, list, remove placements, and the report of what ran."""

from __future__ import annotations

import click
from rich.table import Table

from kernel import utcnow
from newsletter.cli.context import Context, pass_context
from newsletter.services import sponsors as placements
from newsletter.services.editions import parse_date
from newsletter.sponsors import NewPlacement


@click.group()
def sponsors() -> None:
    """Sponsor placements: the sponsored slot of each edition, by date range."""


@sponsors.command("add")
@click.option("--name", required=True, help="The sponsor's name (plain text).")
@click.option("--url", required=True, help="https URL the placement links to.")
@click.option(
    "--text", required=True, help="The sponsor's message, plain text, up to 400 characters."
)
@click.option("--image", help="https URL of an image shown above the text.")
@click.option(
    "--start", "start_text", required=True, metavar="YYYY-MM-DD", help="First edition date."
)
@click.option("--end", "end_text", required=True, metavar="YYYY-MM-DD", help="Last edition date.")
@pass_context
def sponsors_add(
    context: Context,
    name: str,
    url: str,
    text: str,
    image: str | None,
    start_text: str,
    end_text: str,
) -> None:
    """Schedule a placement in every edition from --start to --end (inclusive).

    Ranges of two placements may not overlap: an edition has one sponsored slot.
    """
    app = context.app
    new = NewPlacement(
        name=name,
        url=url,
        text=text,
        image_url=image,
        start_date=parse_date(start_text),
        end_date=parse_date(end_text),
    )
    placement = placements.add(app.database, app.settings, new, now=utcnow())
    context.console.print(
        f"Added placement {placement.id}: {placement.name}, "
        f"{placement.start_date} to {placement.end_date}.",
        markup=False,
    )


@sponsors.command("list")
@pass_context
def sponsors_list(context: Context) -> None:
    """The placements, by start date."""
    found = placements.placements(context.app.database)
    if not found:
        context.err.print("No sponsor placement is scheduled.")
        return
    table = Table(title="Sponsor placements")
    for column in ("id", "name", "from", "to", "url"):
        table.add_column(column)
    for placement in found:
        table.add_row(
            str(placement.id),
            placement.name,
            placement.start_date.isoformat(),
            placement.end_date.isoformat(),
            placement.url,
        )
    context.console.print(table)


@sponsors.command("remove")
@click.argument("placement_id", type=click.IntRange(min=1, max=2**62))
@pass_context
def sponsors_remove(context: Context, placement_id: int) -> None:
    """Remove a placement that has not run (one that ran is kept for its report)."""
    removed = placements.remove(context.app.database, placement_id)
    context.console.print(f"Removed placement {removed.placement_id}.")
    for day in removed.drafts:
        context.err.print(
            f"The draft edition of {day} was built with it: rebuild it "
            f"('newsletter issue build --date {day}')."
        )


@sponsors.command("report")
@pass_context
def sponsors_report(context: Context) -> None:
    """Per placement: the editions that carried it, the deliveries sent of them, the clicks."""
    found = placements.report(context.app.database)
    if not found:
        context.err.print("No sponsor placement is scheduled.")
        return
    clicks = context.app.settings.sponsor_click_counts
    table = Table(title="Sponsor placements: what ran")
    for column in ("id", "name", "editions", "deliveries", "clicks"):
        table.add_column(column)
    for item in found:
        days = ", ".join(edition.edition_date.isoformat() for edition in item.editions)
        table.add_row(
            str(item.placement.id),
            item.placement.name,
            days or "none yet",
            str(item.deliveries),
            str(item.clicks) if clicks or item.clicks else "not counted",
        )
    context.console.print(table)
