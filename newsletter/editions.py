"""Editions: building the day's issue from the store, and its variants.

A draft edition may be rebuilt; one that is sending or sent is what subscribers received, and is
never changed. The moves of its status (``draft → sending → sent``, or ``cancelled``) are in
:mod:`newsletter.edition_states`, re-exported here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kernel import insert_ignoring_conflicts
from newsletter.config import Settings
from newsletter.db import Database
from newsletter.delivery.headers import header_text
from newsletter.digest import (
    SECTIONS,
    Digest,
    Market,
    Sponsor,
    Story,
    latest_market,
    market_at,
    stories_from,
    window_start,
)
from newsletter.edition_states import (  # the moves of an edition, re-exported
    cancel as cancel,
)
from newsletter.edition_states import finish_sending as finish_sending
from newsletter.edition_states import pause as pause
from newsletter.edition_states import resume as resume
from newsletter.edition_states import start_sending as start_sending
from newsletter.errors import EditionRace, IssueStateError
from newsletter.models import (
    REBUILDABLE,
    Article,
    Delivery,
    DeliveryStatus,
    Issue,
    IssueArticle,
    IssueStatus,
    IssueVariant,
)
from newsletter.personal import Links
from newsletter.render import EditionContext, RenderedEdition, Renderer
from newsletter.sponsors import carried_sponsor, scheduled_sponsor
from newsletter.stories import FeedChoice, Selection, Verdict, choose_stories, recent_stories

DEFAULT_VARIANT = "default"
#: The longest subject and preheader the columns hold (PostgreSQL enforces it, SQLite does not).
SUBJECT_MAX: int = getattr(Issue.__table__.c.subject.type, "length", None) or 300
PREHEADER_MAX: int = getattr(Issue.__table__.c.preheader.type, "length", None) or 300


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
    #: Why each candidate story was taken or left (built with ``explain``).
    verdicts: tuple[Verdict, ...] = ()


def edition_context(settings: Settings) -> EditionContext:
    return EditionContext(
        newsletter_name=settings.newsletter_name,
        links=Links(settings.base_url),
        postal_address=settings.postal_address,
        unsubscribe_address=settings.unsubscribe_address,
        timezone=settings.timezone,
        show_images=settings.show_images,
        sponsor_clicks_counted=settings.sponsor_click_counts,
    )


def compose_digest(
    session: Session, settings: Settings, *, edition_date: date, now: datetime
) -> tuple[Digest, list[Article]]:
    """The digest of an edition and the stored articles it shows."""
    digest, selection = compose_selection(session, settings, edition_date=edition_date, now=now)
    return digest, selection.chosen


def compose_selection(
    session: Session,
    settings: Settings,
    *,
    edition_date: date,
    now: datetime,
    explain: bool = False,
) -> tuple[Digest, Selection]:
    """The digest of an edition and its selection of stories (with why each candidate was taken
    or left, when ``explain``)."""
    window = timedelta(hours=settings.max_article_age_hours) or None
    selection = choose_stories(
        session,
        count=settings.article_count,
        now=now,
        since=window_start(session, edition_date=edition_date, now=now, max_age=window),
        per_source_cap=settings.per_source_cap,
        source_caps={feed.name: feed.max_items for feed in settings.feeds if feed.max_items},
        oldest=now - window if window else None,
        feeds={feed.name: FeedChoice.of(feed) for feed in settings.feeds},
        recent=recent_stories(session, edition_date=edition_date, days=settings.story_repeat_days),
        repeat_threshold=settings.story_repeat_threshold,
        explain=explain,
    )
    market = latest_market(
        session,
        coins=settings.market.coins,
        now=now,
        max_age=timedelta(minutes=settings.market_max_age_minutes),
        top_coins=settings.market.top_coins,
        jump_factor=settings.market_max_jump_factor,
    )
    digest = edition_digest(
        edition_date=edition_date,
        stories=stories_from(selection.chosen),
        market=market,
        sponsor=scheduled_sponsor(session, settings, edition_date),
    )
    return digest, selection


def edition_digest(
    *,
    edition_date: date,
    stories: tuple[Story, ...],
    market: Market | None,
    sponsor: Sponsor | None,
    sections: Sequence[str] | None = None,
) -> Digest:
    """The digest of one edition: every variant of it (and so the preview and the archive) is made here.

    What belongs to the edition whatever the reader chose, its sponsored slot, is given here.
    """
    return Digest(
        edition_date=edition_date,
        stories=stories,
        market=market,
        sponsor=sponsor,
        sections=frozenset(sections) if sections is not None else frozenset(SECTIONS),
    )


def build_issue(
    database: Database,
    renderer: Renderer,
    settings: Settings,
    *,
    edition_date: date,
    now: datetime,
    create_only: bool = False,
    explain: bool = False,
) -> BuildResult:
    """Build (or rebuild) the edition of ``edition_date`` from what the store holds now.

    With ``create_only`` an edition that exists meanwhile is left alone (``EditionRace``); with
    ``explain`` the result says why each candidate story was taken or left.
    """
    try:
        with database.transaction() as session:
            issue = session.scalar(select(Issue).where(Issue.edition_date == edition_date))
            rebuilt = issue is not None
            if issue is not None and create_only:
                raise EditionRace(
                    f"the edition of {edition_date} was built by another process meanwhile"
                )
            if issue is not None:
                _check_rebuildable(session, issue, now=now)
                session.execute(delete(IssueArticle).where(IssueArticle.issue_id == issue.id))
                session.execute(delete(IssueVariant).where(IssueVariant.issue_id == issue.id))
                session.flush()
            digest, selection = compose_selection(
                session, settings, edition_date=edition_date, now=now, explain=explain
            )
            articles = selection.chosen
            rendered = renderer.render_edition(digest, context=edition_context(settings))
            subject = edition_subject(rendered.subject, settings)
            if issue is None:
                issue = Issue(edition_date=edition_date, status=IssueStatus.DRAFT, created_at=now)
                session.add(issue)
            _fill(issue, rendered, digest, subject=subject, now=now)
            issue.sponsor_placement_id = digest.sponsor.placement_id if digest.sponsor else None
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
                    subject=subject,
                    html=rendered.html,
                    text=rendered.text,
                    created_at=now,
                )
            )
            return BuildResult(
                issue_id=issue.id,
                edition_date=edition_date,
                subject=subject,
                stories=len(shown),
                stories_dropped=rendered.stories_dropped,
                coins=len(digest.market.coins) if digest.market else 0,
                market_stale=bool(digest.market and digest.market.stale),
                rebuilt=rebuilt,
                verdicts=_clipped(selection.verdicts, articles[len(shown) :]),
            )
    except IntegrityError:
        raise EditionRace(
            f"the edition of {edition_date} was built by another process at the same time",
            hint="run the command again to see its state",
        ) from None


def _clipped(verdicts: Sequence[Verdict], dropped: Sequence[Article]) -> tuple[Verdict, ...]:
    """The verdicts, with the stories left out to stay under the clip limit said so."""
    gone = {(article.title, article.source) for article in dropped}
    return tuple(
        replace(
            verdict,
            taken=False,
            reason="left out to keep the mail under Gmail's 102 KB clip limit",
        )
        if verdict.taken and (verdict.title, verdict.source) in gone
        else verdict
        for verdict in verdicts
    )


def edition_subject(subject: str, settings: Settings) -> str:
    """A subject as stored and sent: one line, capped to its column, never empty."""
    return header_text(subject, limit=SUBJECT_MAX, fallback=settings.newsletter_name)


def _check_rebuildable(session: Session, issue: Issue, *, now: datetime) -> None:
    """A draft edition may be rebuilt; so may one being sent that nobody has received
    yet and no worker holds (a send that stopped before its first message was accepted)."""
    if issue.status in REBUILDABLE:
        return
    if issue.status is IssueStatus.SENDING:
        received = session.scalar(
            select(Delivery.id)
            .where(
                Delivery.issue_id == issue.id,
                or_(
                    Delivery.status == DeliveryStatus.SENT,
                    and_(Delivery.status == DeliveryStatus.SENDING, Delivery.lease_until >= now),
                ),
            )
            .limit(1)
        )
        if received is None:
            return
        raise IssueStateError(
            f"the edition of {issue.edition_date} is being sent and some subscribers received it "
            "or are receiving it; what subscribers received cannot be rebuilt",
            hint="let the send finish ('newsletter send --resume'), or cancel it",
        )
    raise IssueStateError(
        f"the edition of {issue.edition_date} is {issue.status.value}; "
        "what subscribers received cannot be rebuilt",
        hint="build another date with --date",
    )


def _fill(
    issue: Issue, rendered: RenderedEdition, digest: Digest, *, subject: str, now: datetime
) -> None:
    issue.subject = subject
    issue.preheader = header_text(rendered.preheader, limit=PREHEADER_MAX)
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


def variant_key(watchlist: Sequence[str] | None, sections: Sequence[str] | None) -> str:
    """The cache key of a content variant; ``default`` for the edition as built."""
    parts = []
    if watchlist:
        parts.append("w=" + ",".join(watchlist))
    if sections is not None and frozenset(sections) != frozenset(SECTIONS):
        parts.append("s=" + ",".join(section for section in SECTIONS if section in sections))
    if not parts:
        return DEFAULT_VARIANT
    key = ";".join(parts)
    if len(key) > 150:
        key = "h=" + hashlib.sha256(key.encode()).hexdigest()[:32]
    return key


def compose_variant(
    session: Session,
    settings: Settings,
    issue: Issue,
    *,
    watchlist: Sequence[str] | None,
    sections: Sequence[str] | None,
) -> Digest:
    """The edition as built, for a subscriber's coins and sections: same stories, same prices."""
    stories = stories_from([link.article for link in issue.articles])
    market = None
    if issue.market_fetched_at is not None:
        market = market_at(
            session,
            issue.market_fetched_at,
            coins=list(watchlist) if watchlist else settings.market.coins,
            now=issue.built_at,
            max_age=timedelta(minutes=settings.market_max_age_minutes),
            top_coins=settings.market.top_coins,
            jump_factor=settings.market_max_jump_factor,
        )
    return edition_digest(
        edition_date=issue.edition_date,
        stories=stories,
        market=market,
        sponsor=carried_sponsor(session, settings, issue),
        sections=sections,
    )


def ensure_variant(
    database: Database,
    renderer: Renderer,
    settings: Settings,
    issue: Issue,
    *,
    watchlist: Sequence[str] | None,
    sections: Sequence[str] | None,
) -> IssueVariant:
    """The stored variant for these preferences, rendered and stored on first use (once per key)."""
    key = variant_key(watchlist, sections)
    with database.transaction() as session:
        found = session.scalar(
            select(IssueVariant).where(IssueVariant.issue_id == issue.id, IssueVariant.key == key)
        )
        if found is not None:
            return found
        current = session.get_one(Issue, issue.id)
        digest = compose_variant(session, settings, current, watchlist=watchlist, sections=sections)
        rendered = renderer.render_edition(digest, context=edition_context(settings))
        session.execute(
            insert_ignoring_conflicts(
                session, IssueVariant, index_elements=["issue_id", "key"]
            ).values(
                issue_id=issue.id,
                key=key,
                subject=edition_subject(rendered.subject, settings),
                html=rendered.html,
                text=rendered.text,
                created_at=current.built_at,
            )
        )
        return session.scalars(
            select(IssueVariant).where(IssueVariant.issue_id == issue.id, IssueVariant.key == key)
        ).one()
