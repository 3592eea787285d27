"""The ``newsletter`` command: thin commands over :mod:`newsletter.pipeline` and the subscriber list.

Errors meant for the operator are printed without a traceback, with a non-zero exit code (2 for bad
input or settings, 1 for everything else).
"""

from __future__ import annotations

import importlib
import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any, ClassVar

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from kernel import utcnow
from newsletter import __version__, logs, pipeline
from newsletter.bootstrap import App, bootstrap
from newsletter.config import Settings, load_settings
from newsletter.db import redact
from newsletter.delivery import ledger
from newsletter.errors import NewsletterError
from newsletter.models import DeliveryStatus
from newsletter.services import privacy
from subscribers.model import SubscriberStatus
from subscribers.service import (
    ImportReport,
    add_subscriber,
    count_subscribers,
    export_csv,
    import_rows,
    iter_subscribers,
    read_csv,
)

DEMO_CONFIG = Path("examples/demo.toml")
DEMO_SUBSCRIBERS = Path("examples/subscribers.csv")


class Context:
    """Per-invocation state: the config file, and the app built from it on first use."""

    def __init__(
        self, config: Path | None, console: Console, err: Console, verbosity: int = 0
    ) -> None:
        self.config = config
        self.verbosity = verbosity
        self.console = console
        self.err = err
        self._app: App | None = None

    def settings(self, **overrides: Any) -> Settings:
        return load_settings(self.config, **overrides)

    @property
    def app(self) -> App:
        if self._app is None:
            settings = self.settings()
            if settings.log_format != "text":
                logs.configure(self.verbosity, settings.log_format)
            self._app = bootstrap(settings)
        return self._app

    def close(self) -> None:
        if self._app is not None:
            self._app.close()
            self._app = None


class NewsletterGroup(click.Group):
    """Prints operator errors as one clear message and exits non-zero, without a traceback.

    ``web`` is loaded on first use: the web stack is not imported by workers and other commands.
    """

    LAZY: ClassVar[dict[str, tuple[str, str]]] = {"web": ("newsletter.web.command", "web")}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.LAZY})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.LAZY and cmd_name not in self.commands:
            module, attribute = self.LAZY[cmd_name]
            command = getattr(importlib.import_module(module), attribute)
            assert isinstance(command, click.Command)
            self.add_command(command)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NewsletterError as exc:
            click.secho(f"error: {exc}", err=True, fg="red")
            ctx.exit(getattr(exc, "exit_code", 1))


pass_context = click.make_pass_decorator(Context)


def _date_option(
    help_text: str = "Edition date, YYYY-MM-DD (default: today).",
) -> Callable[..., Any]:
    return click.option("--date", "date_text", metavar="YYYY-MM-DD", help=help_text)


def _edition_date(context: Context, date_text: str | None) -> date:
    if date_text:
        return pipeline.parse_date(date_text)
    return pipeline.today(context.app, utcnow())


@click.group(cls=NewsletterGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="NEWSLETTER_CONFIG",
    help="TOML settings file (default: $NEWSLETTER_CONFIG). Environment variables override it.",
)
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.version_option(__version__, prog_name="newsletter")
@click.pass_context
def cli(ctx: click.Context, config: Path | None, verbose: int) -> None:
    """A self-hosted daily crypto-insights newsletter.

    Typical day: fetch, issue build, issue preview, send. 'newsletter demo' runs them all on the
    bundled recorded data.
    """
    logs.configure(verbose)
    context = Context(
        config,
        Console(highlight=False, soft_wrap=True),
        Console(stderr=True, highlight=False, soft_wrap=True),
        verbose,
    )
    ctx.obj = context
    ctx.call_on_close(context.close)


# configuration and database


@cli.command("config")
@pass_context
def show_config(context: Context) -> None:
    """Print the effective settings (secrets masked) as JSON."""
    settings = context.settings()
    data = settings.redacted()
    data["database_url"] = redact(settings.database_url)
    click.echo(json.dumps(data, indent=2, sort_keys=True))


@cli.group()
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


# subscribers


@cli.group()
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
    with context.app.database.transaction() as session:
        subscriber, created = add_subscriber(
            session, email, name=name, timezone=timezone, confirmed=confirmed, source="cli"
        )
        status = subscriber.status.value
        address = subscriber.email
    if created:
        context.console.print(f"Added {address} ({status}).")
    else:
        context.console.print(f"{address} is already on the list ({status}); nothing changed.")


@subscribers.command("import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--confirmed", is_flag=True, help="Import as confirmed (consent obtained elsewhere).")
@pass_context
def subscribers_import(context: Context, file: Path, confirmed: bool) -> None:
    """Import subscribers from a CSV file with an 'email' column (optional: name, timezone)."""
    report = _import(context, file, confirmed=confirmed)
    _print_import(context, report)
    if report.rejected and not (report.added or report.already_present or report.suppressed):
        sys.exit(1)


def _count_lines(file: Path) -> int | None:
    try:
        with file.open("rb") as handle:
            return max(sum(1 for _ in handle) - 1, 0)
    except OSError:
        return None


def _import(context: Context, file: Path, *, confirmed: bool) -> ImportReport:
    app = context.app
    rows = read_csv(
        file,
        max_field_chars=app.settings.import_max_field_chars,
        max_line_chars=app.settings.import_max_line_chars,
    )
    with Bars(context.err) as bars:
        return import_rows(
            app.database.transaction,
            rows,
            confirmed=confirmed,
            source=f"import:{file.name}",
            progress=bars.counter("Importing", _count_lines(file)),
        )


def _print_import(context: Context, report: ImportReport) -> None:
    table = Table(title="Import summary", show_header=False)
    table.add_row("added", str(report.added))
    table.add_row("already present", str(report.already_present))
    table.add_row("suppressed (left earlier, not re-added)", str(report.suppressed))
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
    with context.app.database.transaction(readonly=True) as session:
        for subscriber in iter_subscribers(session, status=chosen):
            click.echo(
                f"{subscriber.email}\t{subscriber.status.value}\t{subscriber.timezone or '-'}"
            )
        counts = count_subscribers(session)
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
    with context.app.database.transaction(readonly=True) as session:
        subscribers_iter = iter_subscribers(session, status=chosen)
        if output is None:
            written = export_csv(subscribers_iter, sys.stdout)
        else:
            with output.open("w", encoding="utf-8", newline="") as handle:
                written = export_csv(subscribers_iter, handle)
    context.err.print(f"Exported {written} subscribers{f' to {output}' if output else ''}.")


@subscribers.command("delete")
@click.argument("email")
@pass_context
def subscribers_delete(context: Context, email: str) -> None:
    """Delete one subscriber (an address that ever left stays suppressed, as a hash)."""
    with context.app.database.transaction() as session:
        removal = privacy.delete_by_email(session, email, now=utcnow())
    kept = "; its hash keeps it suppressed" if removal.suppressed else ""
    context.console.print(f"Deleted {email}{kept}.")


@subscribers.command("erase")
@click.argument("email")
@pass_context
def subscribers_erase(context: Context, email: str) -> None:
    """Erase everything held about an address (right to erasure); only its hash stays."""
    with context.app.database.transaction() as session:
        removal = privacy.erase(session, email, now=utcnow())
    held = "its data, deliveries and reports removed" if removal.found else "it was not on the list"
    context.console.print(f"Erased {email} ({held}); its hash keeps it suppressed.")


@subscribers.command("purge-pending")
@click.option("--dry-run", is_flag=True, help="Count what would be purged; change nothing.")
@pass_context
def subscribers_purge_pending(context: Context, dry_run: bool) -> None:
    """Purge signups never confirmed within the confirmation window plus the grace period."""
    settings = context.app.settings
    with context.app.database.transaction() as session:
        count = privacy.purge_pending(
            session,
            now=utcnow(),
            confirm_hours=settings.confirm_token_hours,
            grace_days=settings.pending_grace_days,
            dry_run=dry_run,
        )
    noun = f"{count} pending signup{'s' if count != 1 else ''}"
    days = f"{settings.confirm_token_hours} hours + {settings.pending_grace_days} days"
    if dry_run:
        context.console.print(f"{noun} would be purged (unconfirmed for over {days}).")
    else:
        context.console.print(f"Purged {noun} (unconfirmed for over {days}).")


# sources and editions


@cli.command()
@pass_context
def fetch(context: Context) -> None:
    """Fetch every configured source (market data, feeds) into the store."""
    outcomes = pipeline.fetch(context.app, now=utcnow())
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


@cli.group()
def issue() -> None:
    """Editions: build, preview, status."""


@issue.command("build")
@_date_option()
@pass_context
def issue_build(context: Context, date_text: str | None) -> None:
    """Build (or rebuild) an edition from the stored articles and prices."""
    edition_date = _edition_date(context, date_text)
    result = pipeline.build(context.app, edition_date=edition_date, now=utcnow())
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


@issue.command("preview")
@_date_option()
@click.option(
    "--output", "-o", type=click.Path(path_type=Path, dir_okay=False), help="HTML file to write."
)
@click.option(
    "--png", is_flag=True, help="Also write screenshots at 600 and 375 px (headless chromium)."
)
@pass_context
def issue_preview(context: Context, date_text: str | None, output: Path | None, png: bool) -> None:
    """Write the edition's final HTML (CSS inlined) to a file and print its path."""
    edition_date = _edition_date(context, date_text)
    path = pipeline.preview(context.app, edition_date=edition_date, output=output)
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
@_date_option()
@pass_context
def issue_status(context: Context, date_text: str | None) -> None:
    """Show an edition's state, its deliveries, and why any failed."""
    edition_date = _edition_date(context, date_text)
    found = pipeline.edition_status(context.app, edition_date=edition_date, now=utcnow())
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


@issue.command("stats")
@_date_option()
@pass_context
def issue_stats(context: Context, date_text: str | None) -> None:
    """An edition's numbers: deliveries, bounces, complaints, unsubscribes it caused."""
    edition_date = _edition_date(context, date_text)
    stats = pipeline.edition_stats(context.app, edition_date=edition_date, now=utcnow())
    table = Table(title=f"{edition_date}: {stats.subject}", show_header=False)
    table.add_row("edition", stats.status.value)
    for status, count in stats.deliveries.items():
        table.add_row(status.value, str(count))
    table.add_row("bounced", str(stats.bounced))
    table.add_row("complaints", str(stats.complaints))
    table.add_row("unsubscribes attributed", str(stats.unsubscribes))
    context.console.print(table)


@issue.command("enqueue")
@_date_option()
@pass_context
def issue_enqueue(context: Context, date_text: str | None) -> None:
    """Queue an edition for every confirmed subscriber at their local send time; send nothing.

    Workers ('newsletter worker') deliver it. Builds the edition first if there is none.
    """
    edition_date = _edition_date(context, date_text)
    outcome = pipeline.enqueue(context.app, edition_date=edition_date, now=utcnow())
    if outcome.built:
        context.console.print(
            f"Built the edition of {edition_date}: {outcome.built.subject}", markup=False
        )
    first = (
        f"; the first is due {outcome.first_due:%Y-%m-%d %H:%M} UTC" if outcome.first_due else ""
    )
    context.console.print(f"Queued {outcome.enqueued} deliveries of {edition_date}{first}.")


@issue.command("pause")
@_date_option()
@pass_context
def issue_pause(context: Context, date_text: str | None) -> None:
    """Hold an edition: workers send none of it until it is resumed."""
    edition_date = _edition_date(context, date_text)
    changed = pipeline.set_paused(context.app, edition_date=edition_date, paused=True, now=utcnow())
    context.console.print(
        f"Paused the edition of {edition_date}."
        if changed
        else f"The edition of {edition_date} was already paused."
    )


@issue.command("resume")
@_date_option()
@pass_context
def issue_resume(context: Context, date_text: str | None) -> None:
    """Lift a pause; workers carry on where they stopped."""
    edition_date = _edition_date(context, date_text)
    changed = pipeline.set_paused(
        context.app, edition_date=edition_date, paused=False, now=utcnow()
    )
    context.console.print(
        f"Resumed the edition of {edition_date}."
        if changed
        else f"The edition of {edition_date} was not paused."
    )


@issue.command("cancel")
@_date_option()
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_context
def issue_cancel(context: Context, date_text: str | None, yes: bool) -> None:
    """Cancel an edition for good: nothing more of it is sent."""
    edition_date = _edition_date(context, date_text)
    if not yes:
        click.confirm(f"Cancel the edition of {edition_date} for good?", abort=True)
    dropped = pipeline.cancel_edition(context.app, edition_date=edition_date, now=utcnow())
    context.console.print(
        f"Cancelled the edition of {edition_date}; {dropped} queued deliveries dropped."
    )


@cli.command()
@_date_option("Serve only this edition date (default: every edition being sent).")
@click.option("--exit-when-idle", is_flag=True, help="Return once nothing is queued or sending.")
@click.option(
    "--poll", type=float, default=5.0, show_default=True, help="Seconds between looks at the queue."
)
@pass_context
def worker(context: Context, date_text: str | None, exit_when_idle: bool, poll: float) -> None:
    """Deliver queued editions; run as many as you like, on any number of hosts.

    Stops on SIGTERM or Ctrl-C after handing back what it claimed but did not send.
    """
    from newsletter.delivery.worker import run_worker

    app = context.app
    app.check_can_send()
    edition_date = pipeline.parse_date(date_text) if date_text else None
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        with Bars(context.err) as bars:
            counter = bars.counter("Delivered", None)
            report = run_worker(
                app,
                stop=stop,
                exit_when_idle=exit_when_idle,
                edition_date=edition_date,
                poll_seconds=poll,
                on_result=lambda recorded: counter(1),
            )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    editions = ", ".join(str(day) for day in sorted(report.editions)) or "none"
    context.console.print(
        f"Worker stopped: {report.sent} sent, {report.retried} to retry, {report.failed} failed, "
        f"{report.deferred} paced for later (editions: {editions})."
    )


@cli.group()
def bounces() -> None:
    """Bounce and complaint reports."""


@bounces.command("process")
@click.argument("path", type=click.Path(path_type=Path))
@pass_context
def bounces_process(context: Context, path: Path) -> None:
    """Read DSNs (RFC 3464) and feedback reports from a Maildir or mbox; suppress hard bounces.

    Soft bounces are counted; processing the same mailbox again changes nothing.
    """
    from newsletter.delivery.bounces import process_mailbox

    summary = process_mailbox(context.app.database, path, now=utcnow())
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


@cli.group()
def unsubscribes() -> None:
    """Unsubscribe requests sent to the List-Unsubscribe mailto: address."""


@unsubscribes.command("process")
@click.argument("path", type=click.Path(path_type=Path))
@pass_context
def unsubscribes_process(context: Context, path: Path) -> None:
    """Honour the unsubscribe requests in a Maildir or mbox (by token, or by the sender's address).

    Each message is moved to the processed box once handled, so running it again changes nothing.
    """
    from newsletter.delivery.unsubscribes import process_unsubscribe_mailbox

    summary = process_unsubscribe_mailbox(
        context.app.database, context.app.signer(), path, now=utcnow()
    )
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


# sending


@cli.command()
@_date_option()
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
    edition_date = _edition_date(context, date_text)
    if to:
        if dry_run:
            context.console.print(
                f"Dry run: would send a test copy of {edition_date} to {', '.join(to)}."
            )
            return
        for address in to:
            result = pipeline.send_test_copy(app, edition_date=edition_date, to=address)
            if result.outcome.value != "sent":
                raise NewsletterError(
                    f"the test copy to {address} was not accepted: {result.detail}"
                )
            context.console.print(f"Sent a test copy of {edition_date} to {address}.")
        return
    plan = pipeline.plan_send(app, edition_date=edition_date)
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
        outcome = pipeline.send(
            app,
            edition_date=edition_date,
            now=utcnow(),
            on_start=bars.send_started,
            on_result=bars.send_result,
            resume_only=resume,
            follow_up=follow_up,
        )
    _print_send(context, outcome)
    if outcome.report and outcome.report.failed and not outcome.report.sent:
        sys.exit(1)


def _print_send(context: Context, outcome: pipeline.SendOutcome) -> None:
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


class Bars:
    """Progress bars on stderr: counters for imports, and a send bar with outcomes and rate."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        self._send: dict[str, Any] = {}

    def __enter__(self) -> Bars:
        self.progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.progress.stop()

    def counter(self, label: str, total: int | None) -> Callable[[int], None]:
        task = self.progress.add_task(label, total=total, detail="")
        return lambda count: self.progress.advance(task, count)

    def send_started(self, total: int) -> None:
        task = self.progress.add_task("Sending", total=total, detail="")
        self._send = {"task": task, "at": time.monotonic(), "sent": 0, "failed": 0, "retry": 0}

    def send_result(self, recorded: ledger.Recorded) -> None:
        state = self._send
        key = recorded.outcome if recorded.outcome in ("sent", "retry") else "failed"
        state[key] += 1
        done = state["sent"] + state["failed"] + state["retry"]
        rate = done / max(time.monotonic() - state["at"], 1e-6)
        detail = f"sent {state['sent']} · failed {state['failed']} · retry {state['retry']} · {rate:.0f} msg/s"
        self.progress.update(state["task"], advance=1, detail=detail)


@cli.command("scheduler")
@pass_context
def scheduler_command(context: Context) -> None:
    """Run the daily plan: fetch, build, queue at each subscriber's send time (workers deliver).

    Safe to run on several hosts at once: one edition per date, one delivery per subscriber.
    """
    from newsletter.runner import run_scheduler, stop_on_signals

    app = context.app
    stop = threading.Event()
    context.err.print(
        f"Scheduler running in {app.settings.timezone}, editions at {app.settings.send_time}; "
        "Ctrl+C stops.",
        markup=False,
    )
    with stop_on_signals(stop):
        run_scheduler(app, stop=stop)


@cli.command("run")
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
    from newsletter.runner import run_all, stop_on_signals

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


@cli.command()
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
    from newsletter.demo import run_demo

    if context.config is None and DEMO_CONFIG.is_file():
        context.config = DEMO_CONFIG
    app = context.app
    with Bars(context.err) as bars:
        report = run_demo(
            app,
            subscribers_csv=subscribers_csv,
            now=utcnow(),
            on_import=bars.counter("Importing", _count_lines(subscribers_csv)),
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
    _print_send(context, report.sent)
    console.print(f"Messages are in: {report.outbox / 'new'}")
    console.print(f"Preview HTML: {report.preview}")


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="newsletter")
