"""Editions as use cases: the edition date, build, preview, pause, resume, cancel, status, stats.

Each method opens its own transaction and returns a plain report; none prints. The CLI, the admin
API and the scheduler call the same methods, so a rule about an edition lives here once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from newsletter import personal
from newsletter.config import Settings
from newsletter.db import Database
from newsletter.delivery import ledger
from newsletter.delivery.relays import relay_counts
from newsletter.editions import (
    BuildResult,
    build_issue,
    cancel,
    get_issue,
    pause,
    require_issue,
    resume,
    variant,
)
from newsletter.errors import EditionRace, UsageError
from newsletter.models import Bounce, BounceKind, Delivery, DeliveryStatus, Issue, IssueStatus
from newsletter.render import Renderer
from subscribers.model import Subscriber


def parse_date(value: str) -> date:
    """An edition date as an operator writes it (YYYY-MM-DD), or a usage error saying how."""
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UsageError(
            f"{value!r} is not a date; write it as YYYY-MM-DD, e.g. 2026-11-24"
        ) from None


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
    #: Per SMTP relay, what it did with the messages handed to it (all editions): sent, deferred,
    #: failed, skipped.
    relays: dict[str, dict[str, int]] = field(default_factory=dict)


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


@dataclass(frozen=True, slots=True)
class Pruned:
    """What a prune of the ledger removed (or would remove): rows of editions dated before
    ``before``."""

    editions: int
    deliveries: int
    before: date


@dataclass(frozen=True, slots=True)
class Editions:
    """The edition use cases, over a database, a renderer and the settings."""

    database: Database
    renderer: Renderer
    settings: Settings

    def today(self, now: datetime) -> date:
        """The edition date: today in the newsletter's time zone."""
        return now.astimezone(self.settings.zone).date()

    def build(
        self,
        *,
        edition_date: date,
        now: datetime,
        create_only: bool = False,
        explain: bool = False,
    ) -> BuildResult:
        """Build (or rebuild) an edition; with ``explain``, say why each candidate story was
        taken or left."""
        return build_issue(
            self.database,
            self.renderer,
            self.settings,
            edition_date=edition_date,
            now=now,
            create_only=create_only,
            explain=explain,
        )

    def build_unless_raced(self, *, edition_date: date, now: datetime) -> BuildResult | None:
        """Build a missing edition; None when another process built it at the same moment."""
        try:
            return self.build(edition_date=edition_date, now=now, create_only=True)
        except EditionRace:
            return None

    def status_of(self, edition_date: date) -> IssueStatus | None:
        """The edition's state, or None when it is not built."""
        with self.database.transaction(readonly=True) as session:
            issue = get_issue(session, edition_date)
            return issue.status if issue else None

    def preview(self, *, edition_date: date, output: Path | None = None) -> Path:
        """Write the edition's final inlined HTML (links to public pages, no personal data)."""
        with self.database.transaction(readonly=True) as session:
            issue = require_issue(session, edition_date)
            html = variant(session, issue).html
        target = output or Path("var") / "preview" / f"{edition_date.isoformat()}.html"
        target.parent.mkdir(parents=True, exist_ok=True)
        links = personal.Links(self.settings.base_url)
        target.write_text(personal.fill(html, personal.public_values(links)), encoding="utf-8")
        return target

    def set_paused(self, *, edition_date: date, paused: bool, now: datetime) -> bool:
        """Pause or resume an edition; False when it already was in that state."""
        with self.database.transaction() as session:
            issue = require_issue(session, edition_date)
            return pause(issue, now=now) if paused else resume(issue)

    def cancel_edition(self, *, edition_date: date, now: datetime) -> int:
        """Cancel an edition; return how many queued deliveries were dropped."""
        with self.database.transaction() as session:
            return cancel(session, require_issue(session, edition_date), now=now)

    def edition_status(self, *, edition_date: date, now: datetime) -> EditionStatus:
        with self.database.transaction(readonly=True) as session:
            issue = require_issue(session, edition_date)
            return EditionStatus(
                edition_date=edition_date,
                status=issue.status,
                subject=issue.subject,
                paused=issue.paused_at is not None,
                deliveries=ledger.counts(session, issue.id),
                failures=ledger.failure_reasons(session, issue.id),
                stalled=ledger.stalled(session, issue.id, now=now),
                relays=relay_counts(session),
            )

    def relays(self) -> dict[str, dict[str, int]]:
        """Per SMTP relay, what it did with the messages handed to it (all editions): sent,
        deferred, failed, skipped; the counts ``edition_status`` shows."""
        with self.database.transaction(readonly=True) as session:
            return relay_counts(session)

    def edition_stats(self, *, edition_date: date, now: datetime) -> EditionStats:
        """An edition's numbers: deliveries by state, bounces and complaints reported about it, and
        the unsubscribes attributed to it (those between it going out and the next edition going
        out)."""
        with self.database.transaction(readonly=True) as session:
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

    def expire_late(self, edition_date: date, *, due_before: datetime) -> int:
        """Fail the queued rows of an edition that were due before ``due_before``; never sent late."""
        with self.database.transaction() as session:
            issue = get_issue(session, edition_date)
            if issue is None:
                return 0
            return ledger.expire(session, issue.id, due_before=due_before)

    def waiting_since(self, edition_date: date, *, due_by: datetime) -> int:
        """Rows of an edition still queued or in flight that were due by ``due_by``."""
        with self.database.transaction(readonly=True) as session:
            issue = get_issue(session, edition_date)
            if issue is None:
                return 0
            return (
                session.scalar(
                    select(func.count())
                    .select_from(Delivery)
                    .where(
                        Delivery.issue_id == issue.id,
                        Delivery.status.in_([DeliveryStatus.QUEUED, DeliveryStatus.SENDING]),
                        Delivery.not_before <= due_by,
                    )
                )
                or 0
            )

    def prune_deliveries(
        self, *, older_than_days: int, now: datetime, dry_run: bool = False
    ) -> Pruned:
        """Delete the ledger rows of editions over (sent or cancelled) and dated more than
        ``older_than_days`` days before today; one transaction per edition, oldest first.

        The editions, their archive pages and every subscriber's status stay; the delivery
        counts follow through the ledger's triggers.
        """
        if older_than_days < 1:
            raise UsageError(
                f"--older-than must be at least 1 day, not {older_than_days}",
                hint="the ledger of recent editions is what guards against sending twice",
            )
        before = self.today(now) - timedelta(days=older_than_days)
        with self.database.transaction(readonly=True) as session:
            editions = ledger.prunable_editions(session, before=before)
        if dry_run:
            return Pruned(len(editions), sum(rows for _, _, rows in editions), before)
        removed = 0
        for issue_id, _, _ in editions:
            with self.database.transaction() as session:
                removed += ledger.prune_edition(session, issue_id, now=now)
        return Pruned(len(editions), removed, before)
