"""Editions as stored: the public archive (editions that went out) and the admin's view of any.

Only editions that went out (sending or sent) are public. Their web version is the stored HTML of
the default variant; the door puts the public values into its personal slots.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from newsletter import personal
from newsletter.delivery import ledger
from newsletter.editions import DEFAULT_VARIANT, get_issue, variant
from newsletter.models import DeliveryStatus, Issue, IssueStatus, IssueVariant
from newsletter.sanitise import edition_content
from newsletter.services.queued import Transactions

PUBLIC = (IssueStatus.SENDING, IssueStatus.SENT)
#: The most editions the archive page lists.
ARCHIVE_SIZE = 1000
#: The most editions the sitemap lists (a sitemap holds at most 50,000 URLs).
SITEMAP_SIZE = 49_000


@dataclass(frozen=True, slots=True)
class PublicEdition:
    edition_date: date
    subject: str
    preheader: str | None
    #: When it went out (sent, or else started sending).
    published_at: datetime | None


@dataclass(frozen=True, slots=True)
class EditionSummary:
    """An edition's state and its deliveries by status (for the admin)."""

    edition_date: date
    status: IssueStatus
    subject: str
    built_at: datetime
    sending_at: datetime | None
    sent_at: datetime | None
    deliveries: dict[DeliveryStatus, int]


def latest_public_edition(database: Transactions) -> date | None:
    """The date of the newest edition that went out, if any."""
    with database.transaction(readonly=True) as session:
        return session.scalar(select(func.max(Issue.edition_date)).where(Issue.status.in_(PUBLIC)))


def public_editions(database: Transactions, *, limit: int = ARCHIVE_SIZE) -> list[PublicEdition]:
    """The editions that went out, newest first."""
    with database.transaction(readonly=True) as session:
        rows = session.execute(
            select(
                Issue.edition_date, Issue.subject, Issue.preheader, Issue.sent_at, Issue.sending_at
            )
            .where(Issue.status.in_(PUBLIC))
            .order_by(Issue.edition_date.desc())
            .limit(limit)
        ).all()
    return [
        PublicEdition(row.edition_date, row.subject, row.preheader, row.sent_at or row.sending_at)
        for row in rows
    ]


@dataclass(frozen=True, slots=True)
class EditionPage:
    """An edition that went out, with its web version (personal slots filled with public values)."""

    edition: PublicEdition
    html: str


def _public_rows(
    limit: int, edition_date: date | None = None
) -> Select[date, str, str, datetime | None, datetime | None, str]:
    """Editions that went out with the HTML of their default variant, newest first."""
    query = (
        select(
            Issue.edition_date,
            Issue.subject,
            Issue.preheader,
            Issue.sent_at,
            Issue.sending_at,
            IssueVariant.html,
        )
        .join(IssueVariant, IssueVariant.issue_id == Issue.id)
        .where(Issue.status.in_(PUBLIC), IssueVariant.key == DEFAULT_VARIANT)
        .order_by(Issue.edition_date.desc())
        .limit(limit)
    )
    return query if edition_date is None else query.where(Issue.edition_date == edition_date)


def public_page(
    database: Transactions, edition_date: date, *, links: personal.Links
) -> EditionPage | None:
    """The web version of an edition that went out, the same for everyone; None otherwise."""
    with database.transaction(readonly=True) as session:
        row = session.execute(_public_rows(1, edition_date)).first()
    if row is None:
        return None
    edition = PublicEdition(
        row.edition_date, row.subject, row.preheader, row.sent_at or row.sending_at
    )
    return EditionPage(edition, personal.fill(row.html, personal.public_values(links)))


def feed_entries(database: Transactions, *, links: personal.Links, limit: int) -> list[EditionPage]:
    """The newest editions that went out, each with its full content made safe for a feed reader."""
    with database.transaction(readonly=True) as session:
        rows = session.execute(_public_rows(limit)).all()
    values = personal.public_values(links)
    return [
        EditionPage(
            PublicEdition(
                row.edition_date, row.subject, row.preheader, row.sent_at or row.sending_at
            ),
            edition_content(personal.fill(row.html, values)),
        )
        for row in rows
    ]


def _summary(session: Session, issue: Issue) -> EditionSummary:
    return EditionSummary(
        edition_date=issue.edition_date,
        status=issue.status,
        subject=issue.subject,
        built_at=issue.built_at,
        sending_at=issue.sending_at,
        sent_at=issue.sent_at,
        deliveries=ledger.counts(session, issue.id),
    )


def edition_summaries(database: Transactions, *, limit: int) -> list[EditionSummary]:
    """Any editions, newest first, with their delivery counts."""
    with database.transaction(readonly=True) as session:
        issues = session.scalars(select(Issue).order_by(Issue.edition_date.desc()).limit(limit))
        return [_summary(session, issue) for issue in issues]


def edition_summary(database: Transactions, edition_date: date) -> EditionSummary | None:
    """One edition with its delivery counts; None when there is none that day."""
    with database.transaction(readonly=True) as session:
        issue = get_issue(session, edition_date)
        return None if issue is None else _summary(session, issue)


def edition_exists(database: Transactions, edition_date: date) -> bool:
    with database.transaction(readonly=True) as session:
        return get_issue(session, edition_date) is not None


def edition_html(database: Transactions, edition_date: date) -> str | None:
    """The stored HTML of an edition's default variant, whatever its state; None when none.

    An edition without a rendered variant raises :class:`~newsletter.errors.IssueStateError`.
    """
    with database.transaction(readonly=True) as session:
        issue = get_issue(session, edition_date)
        return None if issue is None else variant(session, issue).html
