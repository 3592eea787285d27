"""The stories of an edition: which stored articles are new, within the window, mixed by source."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from newsletter.models import Article, Issue, IssueArticle, IssueStatus


@dataclass(frozen=True, slots=True)
class Story:
    title: str
    url: str
    source: str
    published_at: datetime
    teaser: str
    author: str | None = None
    image_url: str | None = None


def select_articles(
    session: Session,
    *,
    count: int,
    now: datetime,
    since: datetime | None,
    per_source_cap: int,
    source_caps: Mapping[str, int] | None = None,
    oldest: datetime | None = None,
) -> list[Article]:
    """The edition's stories: new since ``since``, never used by another edition, sources mixed.

    A story counts as new when it was published, or first seen, since ``since`` (a feed that lags
    still gets its stories in); none dated before ``oldest`` (the window) gets in, however late it
    was first seen. Duplicates across feeds (same normalised title) count once. The
    order interleaves the sources, newest first within each round, and no source gives more than
    its cap.
    """
    used = select(IssueArticle.article_id)
    query = (
        select(Article)
        .where(Article.id.not_in(used), Article.published_at <= now)
        .order_by(Article.published_at.desc(), Article.id.desc())
        .limit(max(count * 20, 200))
    )
    if since is not None:
        query = query.where(or_(Article.published_at >= since, Article.first_seen_at >= since))
    if oldest is not None:
        query = query.where(Article.published_at >= oldest)
    caps = dict(source_caps or {})
    titles: set[str] = set()
    by_source: dict[str, list[Article]] = {}
    for article in session.scalars(query):
        if article.title_key in titles:
            continue
        titles.add(article.title_key)
        queue = by_source.setdefault(article.source, [])
        if len(queue) < caps.get(article.source, per_source_cap):
            queue.append(article)
    chosen: list[Article] = []
    while len(chosen) < count and any(by_source.values()):
        heads = sorted(
            (queue.pop(0) for queue in by_source.values() if queue),
            key=lambda article: (article.published_at, article.id),
            reverse=True,
        )
        chosen.extend(heads[: count - len(chosen)])
    return chosen


def window_start(
    session: Session, *, edition_date: date, now: datetime, max_age: timedelta | None
) -> datetime | None:
    """Where an edition's news starts: the previous edition's build, or 24 h back, within ``max_age``.

    ``max_age`` None means no window at all (replaying recorded feeds).
    """
    if max_age is None:
        return None
    previous = session.scalar(
        select(Issue.built_at)
        .where(
            Issue.edition_date < edition_date,
            Issue.status.in_([IssueStatus.SENDING, IssueStatus.SENT]),
        )
        .order_by(Issue.edition_date.desc())
    )
    start = previous if previous is not None else now - timedelta(hours=24)
    return max(start, now - max_age)


def stories_from(articles: Sequence[Article]) -> tuple[Story, ...]:
    return tuple(
        Story(
            title=article.title,
            url=article.url,
            source=article.source,
            published_at=article.published_at,
            teaser=article.summary,
            author=article.author,
            image_url=article.image_url
            if (article.image_url or "").startswith("https://")
            else None,
        )
        for article in articles
    )
