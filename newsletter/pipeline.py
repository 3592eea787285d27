"""The newsletter's operations, as the CLI, the scheduler and the admin API call them.

Each function does one step on an :class:`~newsletter.bootstrap.App` and returns a plain report; none
prints. Every step is idempotent: a rerun never sends an edition twice to the same subscriber.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from sqlalchemy import Text, cast, func, select

from kernel import utcnow
from newsletter import personal
from newsletter.bootstrap import App
from newsletter.delivery import ledger
from newsletter.delivery.sender import DeliveryReport, send_test
from newsletter.delivery.transports import SendResult
from newsletter.edition_states import move_edition
from newsletter.editions import (
    BuildResult,
    build_issue,
    cancel,
    get_issue,
    pause,
    require_issue,
    resume,
    start_sending,
    variant,
)
from newsletter.errors import EditionRace, IssueStateError, UsageError
from newsletter.ingest import SourceOutcome, fetch_sources
from newsletter.models import Bounce, BounceKind, Delivery, DeliveryStatus, Issue, IssueStatus
from subscribers.addresses import normalise
from subscribers.model import Subscriber


def today(app: App, now: datetime) -> date:
    """The edition date: today in the newsletter's time zone."""
    return now.astimezone(app.settings.zone).date()


def parse_date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UsageError(
            f"{value!r} is not a date; write it as YYYY-MM-DD, e.g. 2026-11-24"
        ) from None


def fetch(app: App, *, now: datetime) -> list[SourceOutcome]:
    """Fetch every source once, over one HTTP client that is closed when the fetch ends."""
    with app.fetcher() as fetcher:
        return fetch_sources(
            app.database,
            feeds=app.feed_sources(fetcher),
            market=app.market_source(fetcher),
            sentiment=app.sentiment_source(fetcher),
            now=now,
            concurrency=app.settings.fetch_concurrency,
        )


def build(app: App, *, edition_date: date, now: datetime, create_only: bool = False) -> BuildResult:
    return build_issue(
        app.database,
        app.renderer,
        app.settings,
        edition_date=edition_date,
        now=now,
        create_only=create_only,
    )


def _build_unless_raced(app: App, *, edition_date: date, now: datetime) -> BuildResult | None:
    """Build a missing edition; None when another process built it at the same moment."""
    try:
        return build(app, edition_date=edition_date, now=now, create_only=True)
    except EditionRace:
        return None


def preview(app: App, *, edition_date: date, output: Path | None = None) -> Path:
    """Write the edition's final inlined HTML (links to public pages, no personal data)."""
    with app.database.transaction(readonly=True) as session:
        issue = require_issue(session, edition_date)
        html = variant(session, issue).html
    target = output or Path("var") / "preview" / f"{edition_date.isoformat()}.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    links = personal.Links(app.settings.base_url)
    target.write_text(personal.fill(html, personal.public_values(links)), encoding="utf-8")
    return target


@dataclass(frozen=True, slots=True)
class SendPlan:
    """What a send would do, without doing it."""

    edition_date: date
    issue_status: IssueStatus | None
    confirmed: int
    to_enqueue: int
    in_ledger: int
    variants: int


def plan_send(app: App, *, edition_date: date) -> SendPlan:
    with app.database.transaction(readonly=True) as session:
        issue = get_issue(session, edition_date)
        confirmed = (
            session.scalar(
                select(func.count()).select_from(Subscriber).where(ledger.receives_editions())
            )
            or 0
        )
        in_ledger = 0
        to_enqueue = confirmed
        if issue is not None:
            in_ledger = (
                session.scalar(
                    select(func.count()).select_from(Delivery).where(Delivery.issue_id == issue.id)
                )
                or 0
            )
            already = (
                session.scalar(
                    select(func.count())
                    .select_from(Delivery)
                    .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
                    .where(Delivery.issue_id == issue.id, ledger.receives_editions())
                )
                or 0
            )
            to_enqueue = confirmed - already
            if issue.status in (IssueStatus.SENT, IssueStatus.CANCELLED):
                to_enqueue = 0
        variants = (
            session.scalar(
                select(func.count()).select_from(
                    # JSON has no equality on PostgreSQL: compare the lists as text.
                    select(
                        cast(Subscriber.watchlist, Text),
                        cast(Subscriber.sections, Text),
                        Subscriber.format,
                    )
                    .where(ledger.receives_editions())
                    .distinct()
                    .subquery()
                )
            )
            or 0
        )
        return SendPlan(
            variants=variants,
            edition_date=edition_date,
            issue_status=issue.status if issue else None,
            confirmed=confirmed,
            to_enqueue=to_enqueue,
            in_ledger=in_ledger,
        )


@dataclass(frozen=True, slots=True)
class SendOutcome:
    edition_date: date
    already_sent: bool
    built: BuildResult | None
    enqueued: int
    due: int
    report: DeliveryReport | None
    sent_at: datetime | None = None


def send(
    app: App,
    *,
    edition_date: date,
    now: datetime,
    on_start: Callable[[int], None] | None = None,
    on_result: Callable[[ledger.Recorded], None] | None = None,
    clock: Callable[[], datetime] | None = None,
    resume_only: bool = False,
    follow_up: bool = False,
) -> SendOutcome:
    """Send an edition now: build it if there is none, enqueue every confirmed subscriber, deliver.

    An edition already sent is left alone (``already_sent``); one being sent is resumed.
    """
    app.check_can_send()
    built = None
    with app.database.transaction(readonly=True) as session:
        issue = get_issue(session, edition_date)
    if resume_only and (issue is None or issue.status is not IssueStatus.SENDING):
        state = issue.status.value if issue else "not built"
        raise IssueStateError(
            f"the edition of {edition_date} is {state}; there is no interrupted send to resume",
            hint="start a send with 'newsletter send'",
        )
    if issue is None:
        built = _build_unless_raced(app, edition_date=edition_date, now=now)
    elif issue.status is IssueStatus.SENT and not follow_up:
        return SendOutcome(edition_date, True, None, 0, 0, None, sent_at=issue.sent_at)
    elif issue.status is IssueStatus.CANCELLED:
        raise IssueStateError(f"the edition of {edition_date} was cancelled; it will not be sent")
    with app.database.transaction() as session:
        current = require_issue(session, edition_date)
        enqueued = 0
        if resume_only:
            resume(current)
            # Due now: an operator resuming an interrupted send wants it finished.
            ledger.reap_expired(session, current.id, now=now)
            ledger.bring_forward(session, current.id, now=now)
        else:
            if current.paused_at is not None:
                raise IssueStateError(
                    f"the edition of {edition_date} is paused",
                    hint="resume it with 'newsletter issue resume' or 'newsletter send --resume'",
                )
            if current.status is IssueStatus.SENT and not follow_up:
                # Another process built and sent it while this one was starting.
                return SendOutcome(edition_date, True, None, 0, 0, None, sent_at=current.sent_at)
            if follow_up and current.status is IssueStatus.SENT:
                move_edition(current, IssueStatus.SENDING, now=now)  # reopened for newcomers
            start_sending(current, now=now)
            enqueued = ledger.enqueue_issue(session, current.id, now=now, not_before=now)
        due = (
            session.scalar(
                select(func.count())
                .select_from(Delivery)
                .where(
                    Delivery.issue_id == current.id,
                    Delivery.status.in_([DeliveryStatus.QUEUED, DeliveryStatus.SENDING]),
                    Delivery.not_before <= now,
                )
            )
            or 0
        )
        issue_id = current.id
    with app.database.transaction() as session:
        ledger.refresh_statistics(session, added=enqueued)
    if on_start is not None:
        on_start(due)
    transport = app.transport()
    try:
        with app.database.transaction(readonly=True) as session:
            target = session.get_one(Issue, issue_id)
        sender = app.sender(transport, on_result=on_result, clock=clock or utcnow)
        try:
            report = sender.deliver(target)
        finally:
            sender.close()
    finally:
        transport.close()
    return SendOutcome(edition_date, False, built, enqueued, due, report)


def send_test_copy(app: App, *, edition_date: date, to: str) -> SendResult:
    """Send one copy of an edition to ``to``, marked [Test]; the ledger is not touched."""
    address = normalise(to).email
    with app.database.transaction(readonly=True) as session:
        issue = require_issue(session, edition_date)
        stored = variant(session, issue)
        html, text = stored.html, stored.text
    transport = app.transport()
    try:
        return send_test(
            transport=transport,
            identity=app.identity(),
            issue=issue,
            html=html,
            text=text,
            to=address,
        )
    finally:
        transport.close()


@dataclass(frozen=True, slots=True)
class EnqueueOutcome:
    edition_date: date
    built: BuildResult | None
    enqueued: int
    first_due: datetime | None


def enqueue(app: App, *, edition_date: date, now: datetime) -> EnqueueOutcome:
    """Queue an edition for every confirmed subscriber at their local send time; deliver nothing.

    Builds the edition first if there is none. Workers (``newsletter worker``) do the sending.
    """
    built = None
    with app.database.transaction(readonly=True) as session:
        issue = get_issue(session, edition_date)
    if issue is None:
        built = _build_unless_raced(app, edition_date=edition_date, now=now)
    with app.database.transaction() as session:
        current = require_issue(session, edition_date)
        if current.status in (IssueStatus.SENT, IssueStatus.CANCELLED):
            raise IssueStateError(
                f"the edition of {edition_date} is {current.status.value}; nothing was queued",
                hint="a follow-up for subscribers who joined since is 'newsletter send --follow-up'"
                if current.status is IssueStatus.SENT
                else None,
            )
        start_sending(current, now=now)
        settings = app.settings
        added = ledger.enqueue_issue(
            session,
            current.id,
            now=now,
            edition_date=edition_date,
            default_zone=settings.timezone,
            default_clock=settings.send_clock,
        )
        first_due = ledger.next_due(session, current.id)
    with app.database.transaction() as session:
        ledger.refresh_statistics(session, added=added)
    return EnqueueOutcome(edition_date, built, added, first_due)


def set_paused(app: App, *, edition_date: date, paused: bool, now: datetime) -> bool:
    """Pause or resume an edition; False when it already was in that state."""
    with app.database.transaction() as session:
        issue = require_issue(session, edition_date)
        return pause(issue, now=now) if paused else resume(issue)


def cancel_edition(app: App, *, edition_date: date, now: datetime) -> int:
    """Cancel an edition; return how many queued deliveries were dropped."""
    with app.database.transaction() as session:
        return cancel(session, require_issue(session, edition_date), now=now)


@dataclass(frozen=True, slots=True)
class EditionStatus:
    """An edition's state, its deliveries, and what went wrong with them."""

    edition_date: date
    status: IssueStatus
    subject: str
    paused: bool
    deliveries: dict[DeliveryStatus, int]
    failures: list[tuple[str, int]]
    stalled: int


def edition_status(app: App, *, edition_date: date, now: datetime) -> EditionStatus:
    with app.database.transaction(readonly=True) as session:
        issue = require_issue(session, edition_date)
        return EditionStatus(
            edition_date=edition_date,
            status=issue.status,
            subject=issue.subject,
            paused=issue.paused_at is not None,
            deliveries=ledger.counts(session, issue.id),
            failures=ledger.failure_reasons(session, issue.id),
            stalled=ledger.stalled(session, issue.id, now=now),
        )


@dataclass(frozen=True, slots=True)
class EditionStats:
    edition_date: date
    status: IssueStatus
    subject: str
    deliveries: dict[DeliveryStatus, int]
    bounced: int
    complaints: int
    unsubscribes: int
    sent_at: datetime | None


def edition_stats(app: App, *, edition_date: date, now: datetime) -> EditionStats:
    """An edition's numbers: deliveries by state, bounces and complaints reported about it, and the
    unsubscribes attributed to it (those between it going out and the next edition going out)."""
    with app.database.transaction(readonly=True) as session:
        issue = require_issue(session, edition_date)
        deliveries = ledger.counts(session, issue.id)
        kinds = dict(
            session.execute(
                select(Bounce.kind, func.count())
                .join(Delivery, Delivery.id == Bounce.delivery_id)
                .where(Delivery.issue_id == issue.id)
                .group_by(Bounce.kind)
            ).all()
        )
        start = issue.sending_at
        unsubscribes = 0
        if start is not None:
            following = session.scalar(
                select(func.min(Issue.sending_at)).where(Issue.sending_at > start)
            )
            unsubscribes = (
                session.scalar(
                    select(func.count())
                    .select_from(Subscriber)
                    .where(
                        Subscriber.unsubscribed_at >= start,
                        Subscriber.unsubscribed_at < (following or now),
                    )
                )
                or 0
            )
        return EditionStats(
            edition_date=edition_date,
            status=issue.status,
            subject=issue.subject,
            deliveries=deliveries,
            bounced=kinds.get(BounceKind.HARD, 0),
            complaints=kinds.get(BounceKind.COMPLAINT, 0),
            unsubscribes=unsubscribes,
            sent_at=issue.sent_at,
        )
