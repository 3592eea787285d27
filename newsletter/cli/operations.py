"""Operations: settings, the database schema, fetching, mailboxes, long-running processes, the demo."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import click
from rich.table import Table

from kernel import utcnow
from newsletter.cli.context import Context, count_lines, pass_context, retention_options
from newsletter.cli.progress import Bars
from newsletter.cli.sending import print_send
from newsletter.db import redact
from newsletter.errors import NewsletterError
from newsletter.services import bounce_webhook
from newsletter.signals import stop_on_signals

DEMO_CONFIG = Path("examples/demo.toml")
DEMO_SUBSCRIBERS = Path("examples/subscribers.csv")


# configuration and database


@click.command("config")
@pass_context
def show_config(context: Context) -> None:
    """Print the effective settings (secrets masked) as JSON."""
    settings = context.settings()
    data = settings.redacted()
    data["database_url"] = redact(settings.database_url)
    click.echo(json.dumps(data, indent=2, sort_keys=True))


@click.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@pass_context
def db_upgrade(context: Context) -> None:
    """Create or migrate the database schema to the latest revision."""
    from newsletter import migrate

    app = context.app
    before, after = migrate.upgrade(app.database)
    where = redact(app.settings.database_url)
    if before == after:
        context.console.print(f"Database {where} is up to date (revision {after}).")
    else:
        context.console.print(f"Database {where} upgraded from {before or 'empty'} to {after}.")


@db.command("status")
@pass_context
def db_status(context: Context) -> None:
    """Show the schema revision of the database and of the code."""
    from newsletter import migrate

    app = context.app
    current = migrate.current_revision(app.database)
    head = migrate.head_revision(app.database)
    context.console.print(f"database: {current or 'empty'}  code: {head}")
    if current != head:
        context.console.print("Run 'newsletter db upgrade' to migrate.")
        sys.exit(1)


@click.command()
@pass_context
def fetch(context: Context) -> None:
    """Fetch every configured source (market data, feeds) into the store."""
    outcomes = context.app.sources.fetch(now=utcnow())
    table = Table(title="Sources")
    for column in ("source", "kind", "items", "new", "result"):
        table.add_column(column)
    for outcome in outcomes:
        table.add_row(
            outcome.name,
            outcome.kind,
            str(outcome.items),
            str(outcome.new),
            "ok" if outcome.ok else f"[red]failed: {outcome.error}[/red]",
        )
    context.console.print(table)
    failed = [outcome for outcome in outcomes if not outcome.ok]
    if outcomes and len(failed) == len(outcomes):
        raise NewsletterError("every source failed; nothing was fetched")


@click.group("outbox", invoke_without_command=True)
@click.option("--failures", "limit", default=20, show_default=True, help="Failures to list.")
@click.pass_context
def outbox_command(click_context: click.Context, limit: int) -> None:
    """The subscription mails: how many wait, are sent or were given up, and why.

    With a subcommand (prune), that instead.
    """
    if click_context.invoked_subcommand is None:
        _outbox_state(click_context.find_root().obj, limit)


@outbox_command.command("prune")
@retention_options("Prune the mails written more than DAYS days ago.")
@pass_context
def outbox_prune(context: Context, days: int, dry_run: bool) -> None:
    """Delete the subscription mails sent or given up long ago (waiting ones stay).

    A sent mail's row keeps no message, only who it went to and when; a given-up one keeps its
    reason. Run it from a timer, as 'newsletter deliveries prune'.
    """
    pruned = context.app.outbox.prune(older_than_days=days, now=utcnow(), dry_run=dry_run)
    mails = f"{pruned.mails:,} subscription mail{'s' if pruned.mails != 1 else ''}"
    scope = f"written before {pruned.before:%Y-%m-%d %H:%M} UTC"
    if dry_run:
        context.console.print(f"{mails} {scope} would be pruned.")
    else:
        context.console.print(f"Pruned {mails} {scope}.")


def _outbox_state(context: Context, limit: int) -> None:
    state = context.app.outbox.state(failures=limit)
    counts = "  ".join(f"{status}: {count}" for status, count in state.counts.items())
    context.console.print(f"subscription mails  {counts}")
    if state.next_due is not None:
        context.console.print(f"next due: {state.next_due:%Y-%m-%d %H:%M:%S} UTC")
    if state.failures:
        context.console.print("given up (newest first):")
    for failure in state.failures:
        context.console.print(
            f"  #{failure.id} {failure.kind} to {failure.recipient} "
            f"(subscriber {failure.subscriber_id}), {failure.attempts} tries, "
            f"queued {failure.created_at:%Y-%m-%d %H:%M}: {failure.reason}",
            markup=False,
        )


@click.group()
def bounces() -> None:
    """Bounce and complaint reports."""


@bounces.command("process")
@click.argument("path", type=click.Path(path_type=Path))
@pass_context
def bounces_process(context: Context, path: Path) -> None:
    """Read DSNs (RFC 3464) and feedback reports from a Maildir or mbox; suppress hard bounces.

    Soft bounces are counted; processing the same mailbox again changes nothing.
    """
    summary = context.app.mailboxes.process_bounces(path, now=utcnow())
    table = Table(title=f"Bounces in {path}", show_header=False)
    table.add_row("reports", str(summary.reports))
    table.add_row("hard bounces", str(summary.hard))
    table.add_row("soft bounces (counted)", str(summary.soft))
    table.add_row("complaints", str(summary.complaints))
    table.add_row("addresses suppressed", str(summary.suppressed))
    table.add_row("already processed", str(summary.already_seen))
    table.add_row("unknown recipients", str(summary.unknown))
    table.add_row("other messages", str(summary.not_reports))
    context.console.print(table)
    for line in summary.messages:
        context.err.print(line, markup=False)


@bounces.command("receive")
@click.argument("path", type=click.Path(path_type=Path))
@pass_context
def bounces_receive(context: Context, path: Path) -> None:
    """Apply one saved provider event (JSON) or report message (.eml), as if it were posted.

    Reads what POST /api/webhooks/bounces reads: an Amazon SNS/SES event, a Postmark or Mailgun
    webhook, or a whole DSN or feedback report. Receiving the same event again changes nothing.
    """
    receipt = bounce_webhook.receive_file(context.app.database, path, now=utcnow())
    context.console.print(
        f"{receipt.provider} event {receipt.event_id}: {receipt.result}", markup=False
    )
    for item in receipt.recipients:
        click.echo(f"{item.recipient}\t{item.kind}\t{item.outcome}")
    if receipt.note:
        context.err.print(receipt.note, markup=False)


@click.group()
def unsubscribes() -> None:
    """Unsubscribe requests sent to the List-Unsubscribe mailto: address."""


@unsubscribes.command("process")
@click.argument("path", type=click.Path(path_type=Path))
@pass_context
def unsubscribes_process(context: Context, path: Path) -> None:
    """Honour the unsubscribe requests in a Maildir or mbox (by token, or by the sender's address).

    Each message is moved to the processed box once handled, so running it again changes nothing.
    """
    summary = context.app.mailboxes.process_unsubscribes(path, now=utcnow())
    if not summary.messages:
        context.console.print(
            f"No new messages in {path} (processed ones are in {summary.processed_to}).",
            markup=False,
        )
        return
    table = Table(title=f"Unsubscribe requests in {path}", show_header=False)
    table.add_row("messages", str(summary.messages))
    table.add_row("unsubscribed", str(summary.unsubscribed))
    table.add_row("had left already", str(summary.already))
    table.add_row("naming no subscriber", str(summary.unknown))
    table.add_row("automatic mail (ignored)", str(summary.not_requests))
    table.add_row("moved to", summary.processed_to)
    context.console.print(table)
    for line in summary.notes:
        context.err.print(line, markup=False)


@click.command("scheduler")
@pass_context
def scheduler_command(context: Context) -> None:
    """Run the daily plan: fetch, build, queue at each subscriber's send time (workers deliver).

    Safe to run on several hosts at once: one edition per date, one delivery per subscriber.
    """
    from newsletter.runner import run_scheduler

    app = context.app
    stop = threading.Event()
    context.err.print(
        f"Scheduler running in {app.settings.timezone}, editions at {app.settings.send_time}; "
        "Ctrl+C stops.",
        markup=False,
    )
    with stop_on_signals(stop):
        run_scheduler(app, stop=stop)


@click.command("run")
@click.option("--host", help="Web app address (default: NEWSLETTER_WEB_HOST).")
@click.option(
    "--port", type=click.IntRange(1, 65535), help="Web app port (default: NEWSLETTER_WEB_PORT)."
)
@click.option("--no-web", is_flag=True, help="Scheduler and worker only.")
@pass_context
def run_command(context: Context, host: str | None, port: int | None, no_web: bool) -> None:
    """Everything in one process: the web app, the daily scheduler and a delivery worker.

    The embedded default for small lists; see docs/deployment.md for larger installs.
    """
    from newsletter.runner import run_all

    app = context.app
    app.check_can_send()
    settings = app.settings
    stop = threading.Event()
    context.err.print(
        f"{settings.newsletter_name}: editions at {settings.send_time} {settings.timezone}"
        + (
            ""
            if no_web
            else f", web on http://{host or settings.web_host}:{port or settings.web_port}"
        )
        + "; Ctrl+C stops.",
        markup=False,
    )
    with stop_on_signals(stop):
        run_all(
            app,
            host=host or settings.web_host,
            port=port or settings.web_port,
            stop=stop,
            web=not no_web,
        )


# the quick start


@click.command()
@click.option(
    "--subscribers",
    "subscribers_csv",
    type=click.Path(path_type=Path, dir_okay=False),
    default=DEMO_SUBSCRIBERS,
    show_default=True,
    help="CSV of demo subscribers, imported as confirmed.",
)
@pass_context
def demo(context: Context, subscribers_csv: Path) -> None:
    """Run the whole day on the demo configuration: migrate, import, fetch, build, send, preview."""
    if context.config is None and DEMO_CONFIG.is_file():
        context.config = DEMO_CONFIG
    app = context.app
    with Bars(context.err) as bars:
        report = app.demo.run(
            subscribers_csv=subscribers_csv,
            now=utcnow(),
            on_import=bars.counter("Importing", count_lines(subscribers_csv)),
            on_start=bars.send_started,
            on_result=bars.send_result,
        )
    console = context.console
    imported = report.imported
    console.print(
        f"Subscribers: {report.confirmed} confirmed "
        f"({imported.added} added now, {imported.already_present} already present, "
        f"{len(imported.rejected)} rejected)"
    )
    for outcome in report.sources:
        state = (
            f"{outcome.items} items, {outcome.new} new"
            if outcome.ok
            else f"failed: {outcome.error}"
        )
        console.print(f"Source {outcome.name}: {state}", markup=False)
    if report.built:
        console.print(f"Edition {report.built.edition_date}: {report.built.subject}", markup=False)
    print_send(context, report.sent)
    console.print(f"Messages are in: {report.outbox / 'new'}")
    console.print(f"Preview HTML: {report.preview}")
