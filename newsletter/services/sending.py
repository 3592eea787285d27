"""Sending as use cases: plan a send, send now, send a test copy, enqueue for the workers.

Every step is idempotent: a rerun never sends an edition twice to the same subscriber. The
dependencies come in explicitly: the database, the settings, the editions service, and factories
for a transport, a sender and the sender identity (``newsletter.bootstrap`` knows which).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

from sqlalchemy import Text, cast, func, select

from kernel import utcnow
from newsletter.config import Settings, check_secret_keys
from newsletter.db import Database
from newsletter.delivery import ledger
from newsletter.delivery.sender import DeliveryReport, Sender, SenderIdentity, send_test
from newsletter.delivery.transports import SendResult, Transport
from newsletter.edition_states import move_edition
from newsletter.editions import (
    BuildResult,
    get_issue,
    require_issue,
    resume,
    start_sending,
    variant,
)
from newsletter.errors import ConfigError, IssueStateError
from newsletter.models import Delivery, DeliveryStatus, Issue, IssueStatus
from newsletter.services.editions import Editions
from subscribers.addresses import normalise
from subscribers.model import Subscriber


class SenderFactory(Protocol):
    """Builds a :class:`Sender` over a transport (the settings decide batch, lease, pacing…)."""

    def __call__(
        self,
        transport: Transport,
        *,
        clock: Callable[[], datetime] = ...,
        on_result: Callable[[ledger.Recorded], None] | None = ...,
        stop: threading.Event | None = ...,
    ) -> Sender: ...


def check_can_send(settings: Settings) -> None:
    """Refuse real mail that would carry forgeable links or no postal address."""
    if settings.transport != "smtp" or settings.demo:
        return
    check_secret_keys(settings)
    if not settings.postal_address.strip():
        raise ConfigError(
            "NEWSLETTER_POSTAL_ADDRESS is empty; bulk mail must show the sender's postal address",
            hint="set NEWSLETTER_POSTAL_ADDRESS",
        )


@dataclass(frozen=True, slots=True)
class SendPlan:
    """What a send would do, without doing it."""

    edition_date: date
    issue_status: IssueStatus | None
    confirmed: int
    to_enqueue: int
    in_ledger: int
    variants: int


@dataclass(frozen=True, slots=True)
class SendOutcome:
    edition_date: date
    already_sent: bool
    built: BuildResult | None
    enqueued: int
    due: int
    report: DeliveryReport | None
    sent_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class EnqueueOutcome:
    edition_date: date
    built: BuildResult | None
    enqueued: int
    first_due: datetime | None


@dataclass(frozen=True, slots=True)
class Sending:
    """The sending use cases."""

    database: Database
    settings: Settings
    editions: Editions
    transport: Callable[[], Transport]
    sender: SenderFactory
    identity: Callable[[], SenderIdentity]

    def check_can_send(self) -> None:
        check_can_send(self.settings)

    def send_hours(self) -> list[tuple[str | None, int | None]]:
        """The distinct (time zone, chosen hour) pairs of the subscribers who get editions."""
        with self.database.transaction(readonly=True) as session:
            rows = session.execute(
                select(Subscriber.timezone, Subscriber.send_hour)
                .where(ledger.receives_editions())
                .distinct()
            ).all()
        return [(zone, hour) for zone, hour in rows]

    def plan_send(self, *, edition_date: date) -> SendPlan:
        with self.database.transaction(readonly=True) as session:
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
                        select(func.count())
                        .select_from(Delivery)
                        .where(Delivery.issue_id == issue.id)
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

    def send(
        self,
        *,
        edition_date: date,
        now: datetime,
        on_start: Callable[[int], None] | None = None,
        on_result: Callable[[ledger.Recorded], None] | None = None,
        clock: Callable[[], datetime] | None = None,
        resume_only: bool = False,
        follow_up: bool = False,
    ) -> SendOutcome:
        """Send an edition now: build it if there is none, enqueue every confirmed subscriber,
        deliver.

        An edition already sent is left alone (``already_sent``); one being sent is resumed.
        """
        self.check_can_send()
        built = None
        with self.database.transaction(readonly=True) as session:
            issue = get_issue(session, edition_date)
        if resume_only and (issue is None or issue.status is not IssueStatus.SENDING):
            state = issue.status.value if issue else "not built"
            raise IssueStateError(
                f"the edition of {edition_date} is {state}; there is no interrupted send to resume",
                hint="start a send with 'newsletter send'",
            )
        if issue is None:
            built = self.editions.build_unless_raced(edition_date=edition_date, now=now)
        elif issue.status is IssueStatus.SENT and not follow_up:
            return SendOutcome(edition_date, True, None, 0, 0, None, sent_at=issue.sent_at)
        elif issue.status is IssueStatus.CANCELLED:
            raise IssueStateError(
                f"the edition of {edition_date} was cancelled; it will not be sent"
            )
        with self.database.transaction() as session:
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
                    return SendOutcome(
                        edition_date, True, None, 0, 0, None, sent_at=current.sent_at
                    )
                if follow_up and current.ledger_pruned_at is not None:
                    raise IssueStateError(
                        f"the deliveries of the edition of {edition_date} were pruned on "
                        f"{current.ledger_pruned_at:%Y-%m-%d}: who received it is no longer known, "
                        "so a follow-up would send it again to everyone",
                        hint="send today's edition instead; a follow-up works only for editions "
                        "newer than the retention of 'newsletter deliveries prune'",
                    )
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
        with self.database.transaction() as session:
            ledger.refresh_statistics(session, added=enqueued)
        if on_start is not None:
            on_start(due)
        transport = self.transport()
        try:
            with self.database.transaction(readonly=True) as session:
                target = session.get_one(Issue, issue_id)
            sender = self.sender(transport, on_result=on_result, clock=clock or utcnow)
            try:
                report = sender.deliver(target)
            finally:
                sender.close()
        finally:
            transport.close()
        return SendOutcome(edition_date, False, built, enqueued, due, report)

    def send_test_copy(self, *, edition_date: date, to: str) -> SendResult:
        """Send one copy of an edition to ``to``, marked [Test]; the ledger is not touched."""
        address = normalise(to).email
        with self.database.transaction(readonly=True) as session:
            issue = require_issue(session, edition_date)
            stored = variant(session, issue)
            html, text = stored.html, stored.text
        transport = self.transport()
        try:
            return send_test(
                transport=transport,
                identity=self.identity(),
                issue=issue,
                html=html,
                text=text,
                to=address,
            )
        finally:
            transport.close()

    def enqueue(self, *, edition_date: date, now: datetime) -> EnqueueOutcome:
        """Queue an edition for every confirmed subscriber at their local send time; deliver
        nothing.

        Builds the edition first if there is none. Workers (``newsletter worker``) do the sending.
        """
        built = None
        with self.database.transaction(readonly=True) as session:
            issue = get_issue(session, edition_date)
        if issue is None:
            built = self.editions.build_unless_raced(edition_date=edition_date, now=now)
        with self.database.transaction() as session:
            current = require_issue(session, edition_date)
            if current.status in (IssueStatus.SENT, IssueStatus.CANCELLED):
                raise IssueStateError(
                    f"the edition of {edition_date} is {current.status.value}; nothing was queued",
                    hint="a follow-up for subscribers who joined since is "
                    "'newsletter send --follow-up'"
                    if current.status is IssueStatus.SENT
                    else None,
                )
            start_sending(current, now=now)
            settings = self.settings
            added = ledger.enqueue_issue(
                session,
                current.id,
                now=now,
                edition_date=edition_date,
                default_zone=settings.timezone,
                default_clock=settings.send_clock,
            )
            first_due = ledger.next_due(session, current.id)
        with self.database.transaction() as session:
            ledger.refresh_statistics(session, added=added)
        return EnqueueOutcome(edition_date, built, added, first_due)
