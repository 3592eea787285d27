"""``newsletter issue``: build, preview, status, stats, enqueue, pause, resume, cancel an edition."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from kernel import utcnow
from newsletter.cli.context import Context, chosen_date, date_option, pass_context


@click.group()
def issue() -> None:
    """Editions: build, preview, status."""


@issue.command("build")
@date_option()
@click.option(
    "--explain",
    is_flag=True,
    help="Also print, for each candidate story, why it was taken or left out.",
)
@pass_context
def issue_build(context: Context, date_text: str | None, explain: bool) -> None:
    """Build (or rebuild) an edition from the stored articles and prices."""
    edition_date = chosen_date(context, date_text)
    result = context.app.editions.build(edition_date=edition_date, now=utcnow(), explain=explain)
    verb = "Rebuilt" if result.rebuilt else "Built"
    context.console.print(f"{verb} the edition of {edition_date}: {result.subject}", markup=False)
    context.console.print(f"  {result.stories} stories, {result.coins} coins")
    if result.coins and result.market_stale:
        context.console.print(
            "  note: prices are older than the freshness limit and are labelled so"
        )
    if not result.coins:
        context.console.print("  note: no market data; the edition says prices are unavailable")
    if result.stories_dropped:
        context.console.print(
            f"  note: {result.stories_dropped} stories left out to stay under Gmail's 102 KB clip "
            "limit; they stay available for the next edition"
        )
    if explain:
        context.console.print(f"  {len(result.verdicts)} candidate stories:")
        for verdict in result.verdicts:
            mark = "taken" if verdict.taken else "left "
            context.console.print(
                f"  {mark} {verdict.published_at:%Y-%m-%d %H:%M} {verdict.source}: "
                f"{verdict.title}\n        {verdict.reason}",
                markup=False,
                highlight=False,
            )


@issue.command("preview")
@date_option()
@click.option(
    "--output", "-o", type=click.Path(path_type=Path, dir_okay=False), help="HTML file to write."
)
@click.option(
    "--png", is_flag=True, help="Also write screenshots at 600 and 375 px (headless chromium)."
)
@pass_context
def issue_preview(context: Context, date_text: str | None, output: Path | None, png: bool) -> None:
    """Write the edition's final HTML (CSS inlined) to a file and print its path."""
    edition_date = chosen_date(context, date_text)
    path = context.app.editions.preview(edition_date=edition_date, output=output)
    click.echo(str(path))
    if png:
        from newsletter.screenshot import screenshots

        for shot in screenshots(path):
            click.echo(str(shot.path))
            if shot.overflow:
                context.err.print(
                    f"warning: at {shot.width} px the edition is {shot.overflow} px too wide "
                    "(readers must scroll sideways)"
                )


@issue.command("status")
@date_option()
@pass_context
def issue_status(context: Context, date_text: str | None) -> None:
    """Show an edition's state, its deliveries, and why any failed."""
    edition_date = chosen_date(context, date_text)
    found = context.app.editions.edition_status(edition_date=edition_date, now=utcnow())
    paused = " (paused)" if found.paused else ""
    context.console.print(
        f"{edition_date}: {found.status.value}{paused} — {found.subject}", markup=False
    )
    context.console.print(
        ", ".join(f"{count} {status.value}" for status, count in found.deliveries.items())
    )
    for reason, count in found.failures:
        context.console.print(f"  {count} failed: {reason}", markup=False)
    if found.stalled:
        context.console.print(
            f"  {found.stalled} left in flight by a send that stopped; "
            "'newsletter send --resume' sends them",
            markup=False,
        )
    if found.relays:
        context.console.print("relays (all editions):", markup=False)
        for relay, counts in found.relays.items():
            context.console.print(
                f"  {relay}: " + ", ".join(f"{count} {kind}" for kind, count in counts.items()),
                markup=False,
            )


@issue.command("stats")
@date_option()
@pass_context
def issue_stats(context: Context, date_text: str | None) -> None:
    """An edition's numbers: deliveries, bounces, complaints, unsubscribes it caused."""
    edition_date = chosen_date(context, date_text)
    stats = context.app.editions.edition_stats(edition_date=edition_date, now=utcnow())
    table = Table(title=f"{edition_date}: {stats.subject}", show_header=False)
    table.add_row("edition", stats.status.value)
    for status, count in stats.deliveries.items():
        table.add_row(status.value, str(count))
    table.add_row("bounced", str(stats.bounced))
    table.add_row("complaints", str(stats.complaints))
    table.add_row("unsubscribes attributed", str(stats.unsubscribes))
    context.console.print(table)


@issue.command("enqueue")
@date_option()
@pass_context
def issue_enqueue(context: Context, date_text: str | None) -> None:
    """Queue an edition for every confirmed subscriber at their local send time; send nothing.

    Workers ('newsletter worker') deliver it. Builds the edition first if there is none.
    """
    edition_date = chosen_date(context, date_text)
    outcome = context.app.sending.enqueue(edition_date=edition_date, now=utcnow())
    if outcome.built:
        context.console.print(
            f"Built the edition of {edition_date}: {outcome.built.subject}", markup=False
        )
    first = (
        f"; the first is due {outcome.first_due:%Y-%m-%d %H:%M} UTC" if outcome.first_due else ""
    )
    context.console.print(f"Queued {outcome.enqueued} deliveries of {edition_date}{first}.")


@issue.command("pause")
@date_option()
@pass_context
def issue_pause(context: Context, date_text: str | None) -> None:
    """Hold an edition: workers send none of it until it is resumed."""
    edition_date = chosen_date(context, date_text)
    changed = context.app.editions.set_paused(edition_date=edition_date, paused=True, now=utcnow())
    context.console.print(
        f"Paused the edition of {edition_date}."
        if changed
        else f"The edition of {edition_date} was already paused."
    )


@issue.command("resume")
@date_option()
@pass_context
def issue_resume(context: Context, date_text: str | None) -> None:
    """Lift a pause; workers carry on where they stopped."""
    edition_date = chosen_date(context, date_text)
    changed = context.app.editions.set_paused(edition_date=edition_date, paused=False, now=utcnow())
    context.console.print(
        f"Resumed the edition of {edition_date}."
        if changed
        else f"The edition of {edition_date} was not paused."
    )


@issue.command("cancel")
@date_option()
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_context
def issue_cancel(context: Context, date_text: str | None, yes: bool) -> None:
    """Cancel an edition for good: nothing more of it is sent."""
    edition_date = chosen_date(context, date_text)
    if not yes:
        click.confirm(f"Cancel the edition of {edition_date} for good?", abort=True)
    dropped = context.app.editions.cancel_edition(edition_date=edition_date, now=utcnow())
    context.console.print(
        f"Cancelled the edition of {edition_date}; {dropped} queued deliveries dropped."
    )
