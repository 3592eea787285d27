"""``newsletter send`` (send an edition now, or a test copy) and ``newsletter worker``."""

from __future__ import annotations

import sys
import threading

import click
from rich.table import Table

from kernel import utcnow
from newsletter.cli.context import Context, chosen_date, date_option, pass_context
from newsletter.cli.progress import Bars
from newsletter.errors import NewsletterError
from newsletter.models import DeliveryStatus
from newsletter.services.editions import parse_date
from newsletter.services.sending import SendOutcome
from newsletter.signals import stop_on_signals


@click.command()
@date_option()
@click.option("--dry-run", is_flag=True, help="Count the recipients and variants; send nothing.")
@click.option(
    "--to",
    "to",
    metavar="EMAIL",
    multiple=True,
    help="Send one test copy to EMAIL (repeat for several); the ledger is untouched.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Finish an interrupted send now (lifts a pause; queues no one new).",
)
@click.option(
    "--follow-up",
    is_flag=True,
    help="Send a sent edition to the subscribers who confirmed after it went out.",
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation on a terminal.")
@pass_context
def send(
    context: Context,
    date_text: str | None,
    dry_run: bool,
    to: tuple[str, ...],
    resume: bool,
    follow_up: bool,
    yes: bool,
) -> None:
    """Send an edition now to every confirmed subscriber (building it first if needed).

    On a terminal it asks first, unless --yes; from scripts and timers it goes ahead.
    """
    app = context.app
    edition_date = chosen_date(context, date_text)
    if to:
        if dry_run:
            context.console.print(
                f"Dry run: would send a test copy of {edition_date} to {', '.join(to)}."
            )
            return
        for address in to:
            result = app.sending.send_test_copy(edition_date=edition_date, to=address)
            if result.outcome.value != "sent":
                raise NewsletterError(
                    f"the test copy to {address} was not accepted: {result.detail}"
                )
            context.console.print(f"Sent a test copy of {edition_date} to {address}.")
        return
    plan = app.sending.plan_send(edition_date=edition_date)
    if dry_run:
        state = plan.issue_status.value if plan.issue_status else "not built yet"
        context.console.print(
            f"Dry run for {edition_date} (edition: {state}): {plan.confirmed} confirmed subscribers, "
            f"{plan.to_enqueue} would be sent, {plan.in_ledger} already in the ledger, "
            f"{plan.variants} content variants. Nothing sent."
        )
        return
    if not yes and not resume and sys.stdin.isatty():
        click.confirm(
            f"Send the edition of {edition_date} to {plan.to_enqueue} subscribers now?", abort=True
        )
    with Bars(context.err) as bars:
        outcome = app.sending.send(
            edition_date=edition_date,
            now=utcnow(),
            on_start=bars.send_started,
            on_result=bars.send_result,
            resume_only=resume,
            follow_up=follow_up,
        )
    print_send(context, outcome)
    if outcome.report and outcome.report.failed and not outcome.report.sent:
        sys.exit(1)


def print_send(context: Context, outcome: SendOutcome) -> None:
    if outcome.already_sent:
        when = f" on {outcome.sent_at:%Y-%m-%d %H:%M} UTC" if outcome.sent_at else ""
        context.console.print(
            f"The edition of {outcome.edition_date} was already sent{when}; nothing new was sent."
        )
        return
    report = outcome.report
    assert report is not None
    table = Table(title=f"Send summary: {outcome.edition_date}", show_header=False)
    if outcome.built:
        table.add_row("edition", f"built now: {outcome.built.subject}")
    table.add_row("newly queued", str(outcome.enqueued))
    table.add_row("sent now", str(report.sent))
    table.add_row("to retry later", str(report.retried))
    table.add_row("failed", str(report.failed))
    if report.suppressed:
        table.add_row("addresses suppressed", str(report.suppressed))
    totals = report.counts
    table.add_row(
        "ledger",
        ", ".join(f"{totals.get(status, 0)} {status.value}" for status in DeliveryStatus),
    )
    table.add_row("edition", "sent" if report.finished else "still sending")
    context.console.print(table)
    if report.queued_later and report.next_due:
        context.console.print(
            f"{report.queued_later} deliveries wait until {report.next_due:%Y-%m-%d %H:%M} UTC; "
            "run 'newsletter send' again then."
        )


@click.command()
@date_option("Serve only this edition date (default: every edition being sent).")
@click.option("--exit-when-idle", is_flag=True, help="Return once nothing is queued or sending.")
@click.option(
    "--poll", type=float, default=5.0, show_default=True, help="Seconds between looks at the queue."
)
@pass_context
def worker(context: Context, date_text: str | None, exit_when_idle: bool, poll: float) -> None:
    """Deliver queued editions; run as many as you like, on any number of hosts.

    Stops on SIGTERM or Ctrl-C after handing back what it claimed but did not send.
    """
    app = context.app
    app.check_can_send()
    edition_date = parse_date(date_text) if date_text else None
    stop = threading.Event()
    with stop_on_signals(stop), Bars(context.err) as bars:
        counter = bars.counter("Delivered", None)
        report = app.worker.run(
            stop=stop,
            exit_when_idle=exit_when_idle,
            edition_date=edition_date,
            poll_seconds=poll,
            on_result=lambda recorded: counter(1),
        )
    editions = ", ".join(str(day) for day in sorted(report.editions)) or "none"
    context.console.print(
        f"Worker stopped: {report.sent} sent, {report.retried} to retry, {report.failed} failed, "
        f"{report.deferred} paced for later (editions: {editions})."
    )
    if report.webhooks_delivered or report.webhooks_failed:
        context.console.print(
            f"Webhooks: {report.webhooks_delivered} delivered, "
            f"{report.webhooks_failed} failed attempts (see 'newsletter webhooks list')."
        )
