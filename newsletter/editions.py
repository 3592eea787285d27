"""Editions: building the day's issue from the store, and the moves of its state machine.

``draft → ready → sending → sent`` (or ``cancelled``). A draft or ready edition may be rebuilt; one
that is sending or sent is what subscribers received, and is never changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from newsletter.config import Settings
from newsletter.db import Database
from newsletter.digest import (
    Digest,
    latest_market,
    select_articles,
    stories_from,
    window_start,
)
from newsletter.errors import IssueStateError
from newsletter.models import REBUILDABLE, Article, Issue, IssueArticle, IssueStatus, IssueVariant
from newsletter.personal import Links
from newsletter.render import EditionContext, RenderedEdition, Renderer

DEFAULT_VARIANT = "default"


@dataclass(frozen=True, slots=True)
class BuildResult:
    issue_id: int
    edition_date: date
    subject: str
    stories: int
    stories_dropped: int
    coins: int
    market_stale: bool
    rebuilt: bool


def edition_context(settings: Settings) -> EditionContext:
    return EditionContext(
        newsletter_name=settings.newsletter_name,
        links=Links(settings.base_url),
        postal_address=settings.postal_address,
        unsubscribe_address=settings.unsubscribe_address,
        timezone=settings.timezone,
        show_images=settings.show_images,
    )


def compose_digest(
    session: Session, settings: Settings, *, edition_date: date, now: datetime
) -> tuple[Digest, list[Article]]:
    """The digest of an edition and the stored articles it shows."""
    max_age = settings.max_article_age_hours
    articles = select_articles(
        session,
        count=settings.article_count,
        now=now,
        since=window_start(
            session,
            edition_date=edition_date,
            now=now,
            max_age=timedelta(hours=max_age) if max_age else None,
        ),
        per_source_cap=settings.per_source_cap,
        source_caps={feed.name: feed.max_items for feed in settings.feeds if feed.max_items},
    )
    market = latest_market(
        session,
        coins=settings.market.coins,
        now=now,
        max_age=timedelta(minutes=settings.market_max_age_minutes),
        top_coins=settings.market.top_coins,
    )
    return Digest(
        edition_date=edition_date, stories=stories_from(articles), market=market
    ), articles


def build_issue(
    database: Database,
    renderer: Renderer,
    settings: Settings,
    *,
    edition_date: date,
    now: datetime,
) -> BuildResult:
    """Build (or rebuild) the edition of ``edition_date`` from what the store holds now."""
    try:
        with database.transaction() as session:
            issue = session.scalar(select(Issue).where(Issue.edition_date == edition_date))
            rebuilt = issue is not None
            if issue is not None:
                if issue.status not in REBUILDABLE:
                    raise IssueStateError(
                        f"the edition of {edition_date} is {issue.status.value}; "
                        "what subscribers received cannot be rebuilt",
                        hint="build another date with --date",
                    )
                session.execute(delete(IssueArticle).where(IssueArticle.issue_id == issue.id))
                session.execute(delete(IssueVariant).where(IssueVariant.issue_id == issue.id))
                session.flush()
            digest, articles = compose_digest(session, settings, edition_date=edition_date, now=now)
            rendered = renderer.render_edition(digest, context=edition_context(settings))
            if issue is None:
                issue = Issue(edition_date=edition_date, status=IssueStatus.DRAFT, created_at=now)
                session.add(issue)
            _fill(issue, rendered, digest, now=now)
            session.flush()
            shown = articles[: len(articles) - rendered.stories_dropped]
            session.add_all(
                IssueArticle(issue_id=issue.id, article_id=article.id, position=position)
                for position, article in enumerate(shown)
            )
            session.add(
                IssueVariant(
                    issue_id=issue.id,
                    key=DEFAULT_VARIANT,
                    html=rendered.html,
                    text=rendered.text,
                    created_at=now,
                )
            )
            return BuildResult(
                issue_id=issue.id,
                edition_date=edition_date,
                subject=rendered.subject,
                stories=len(shown),
                stories_dropped=rendered.stories_dropped,
                coins=len(digest.market.coins) if digest.market else 0,
                market_stale=bool(digest.market and digest.market.stale),
                rebuilt=rebuilt,
            )
    except IntegrityError:
        raise IssueStateError(
            f"the edition of {edition_date} was built by another process at the same time",
            hint="run the command again to see its state",
        ) from None


def _fill(issue: Issue, rendered: RenderedEdition, digest: Digest, *, now: datetime) -> None:
    issue.subject = rendered.subject
    issue.preheader = rendered.preheader[:300]
    issue.market_fetched_at = digest.market.fetched_at if digest.market else None
    issue.built_at = now


def get_issue(session: Session, edition_date: date) -> Issue | None:
    return session.scalar(select(Issue).where(Issue.edition_date == edition_date))


def require_issue(session: Session, edition_date: date) -> Issue:
    issue = get_issue(session, edition_date)
    if issue is None:
        raise IssueStateError(
            f"there is no edition for {edition_date}",
            hint=f"build it with 'newsletter issue build --date {edition_date}'",
        )
    return issue


def variant(session: Session, issue: Issue, key: str = DEFAULT_VARIANT) -> IssueVariant:
    found = session.scalar(
        select(IssueVariant).where(IssueVariant.issue_id == issue.id, IssueVariant.key == key)
    )
    if found is None:
        raise IssueStateError(
            f"the edition of {issue.edition_date} has no rendered '{key}' variant",
            hint=f"rebuild it with 'newsletter issue build --date {issue.edition_date}'",
        )
    return found


def start_sending(issue: Issue, *, now: datetime) -> None:
    """draft or ready → sending."""
    if issue.status is IssueStatus.SENDING:
        return
    if issue.status not in REBUILDABLE:
        raise IssueStateError(
            f"the edition of {issue.edition_date} is {issue.status.value}; it cannot be sent"
        )
    issue.status = IssueStatus.SENDING
    issue.sending_at = now


def finish_sending(issue: Issue, *, now: datetime) -> None:
    """sending → sent (when no delivery is queued or in flight)."""
    if issue.status is not IssueStatus.SENDING:
        raise IssueStateError(
            f"the edition of {issue.edition_date} is {issue.status.value}, not sending"
        )
    issue.status = IssueStatus.SENT
    issue.sent_at = now
