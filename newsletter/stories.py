"""The stories of an edition: which stored articles are new, within the window, allowed by their
feed's rules, not a repeat of recent editions, mixed by source and priority; and why each candidate
was taken or left."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from rapidfuzz import fuzz
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from newsletter.config import FeedSettings, rule_pattern
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


@dataclass(frozen=True, slots=True)
class Verdict:
    """Why a candidate story was taken into the edition or left out."""

    title: str
    source: str
    published_at: datetime
    taken: bool
    reason: str


@dataclass(frozen=True, slots=True)
class Used:
    """A story an earlier edition carried: what a new story is compared with."""

    title: str
    title_key: str
    edition_date: date


@dataclass(frozen=True, slots=True)
class Selection:
    chosen: list[Article]
    verdicts: list[Verdict] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class FeedChoice:
    """What a feed's settings say about its stories: the rules and the priority."""

    include: tuple[tuple[str, re.Pattern[str]], ...] = ()
    exclude: tuple[tuple[str, re.Pattern[str]], ...] = ()
    priority: int = 0

    @classmethod
    def of(cls, feed: FeedSettings) -> FeedChoice:
        return cls(
            include=tuple((rule, rule_pattern(rule)) for rule in feed.include),
            exclude=tuple((rule, rule_pattern(rule)) for rule in feed.exclude),
            priority=feed.priority,
        )

    def refusal(self, article: Article) -> str | None:
        """Why a rule of the feed leaves ``article`` out, or None."""
        text = f"{article.title}\n{article.summary}"
        for rule, pattern in self.exclude:
            if pattern.search(text):
                return f"excluded by rule {rule!r} of {article.source}"
        if self.include and not any(pattern.search(text) for _, pattern in self.include):
            rules = ", ".join(repr(rule) for rule, _ in self.include)
            return f"matches no include rule of {article.source} ({rules})"
        return None


def similarity(first: str, second: str) -> float:
    """How close two folded titles are, 0-100.

    The plain edit-distance ratio, or, when both have at least four words, the token-set ratio
    too: a title that only adds words to another ("…, analysts say") is the same story.
    """
    score = fuzz.ratio(first, second)
    if min(first.count(" "), second.count(" ")) >= 3:
        score = max(score, fuzz.token_set_ratio(first, second))
    return float(score)


def repeat_of(
    title_key: str, recent: Sequence[Used], threshold: float
) -> tuple[Used, float] | None:
    """The recent story closest to ``title_key`` at ``threshold`` or above, with its score."""
    best: tuple[Used, float] | None = None
    for used in recent:
        score = similarity(title_key, used.title_key)
        if score >= threshold and (best is None or score > best[1]):
            best = (used, score)
    return best


def recent_stories(session: Session, *, edition_date: date, days: int) -> list[Used]:
    """The stories of the editions sent (or being sent) in the ``days`` before ``edition_date``."""
    if days <= 0:
        return []
    rows = session.execute(
        select(Article.title, Article.title_key, Issue.edition_date)
        .join(IssueArticle, IssueArticle.article_id == Article.id)
        .join(Issue, Issue.id == IssueArticle.issue_id)
        .where(
            Issue.edition_date >= edition_date - timedelta(days=days),
            Issue.edition_date < edition_date,
            Issue.status.in_([IssueStatus.SENDING, IssueStatus.SENT]),
        )
        .order_by(Issue.edition_date.desc(), IssueArticle.position)
    )
    return [Used(title=title, title_key=key, edition_date=day) for title, key, day in rows]


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
    """The edition's stories (see :func:`choose_stories`), without feed rules or repeats."""
    return choose_stories(
        session,
        count=count,
        now=now,
        since=since,
        per_source_cap=per_source_cap,
        source_caps=source_caps,
        oldest=oldest,
    ).chosen


def choose_stories(
    session: Session,
    *,
    count: int,
    now: datetime,
    since: datetime | None,
    per_source_cap: int,
    source_caps: Mapping[str, int] | None = None,
    oldest: datetime | None = None,
    feeds: Mapping[str, FeedChoice] | None = None,
    recent: Sequence[Used] = (),
    repeat_threshold: float = 100.0,
    explain: bool = False,
) -> Selection:
    """The edition's stories: new since ``since``, never used by another edition, sources mixed.

    A story counts as new when it was published, or first seen, since ``since`` (a feed that lags
    still gets its stories in); none dated before ``oldest`` (the window) gets in, however late it
    was first seen. A story its feed's rules leave out, or whose title is within
    ``repeat_threshold`` of one in ``recent`` (the editions of the last days), is left out.
    Duplicates across feeds (same folded title) count once, taken from the feed of the highest
    priority. The order interleaves the sources, in each round by feed priority and then newest
    first, and no source gives more than its cap. With ``explain``, every candidate gets a
    :class:`Verdict`.
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
    choices = dict(feeds or {})
    plain = FeedChoice()

    def priority(article: Article) -> int:
        return choices.get(article.source, plain).priority

    left: dict[int, str] = {}
    titles: dict[str, Article] = {}
    by_source: dict[str, list[Article]] = {}
    candidates = list(session.scalars(query))
    # Highest priority first; sorted() is stable, so newest first within one priority.
    for article in sorted(candidates, key=lambda article: -priority(article)):
        refusal = choices.get(article.source, plain).refusal(article)
        if refusal is not None:
            left[article.id] = refusal
            continue
        repeat = repeat_of(article.title_key, recent, repeat_threshold) if recent else None
        if repeat is not None:
            earlier, score = repeat
            left[article.id] = (
                f"repeat of {earlier.title!r} from {earlier.edition_date} (score {score:.0f})"
            )
            continue
        twin = _twin(article, titles, repeat_threshold)
        if twin is not None:
            other, closeness = twin
            left[article.id] = f"duplicate within the day of {other.title!r} from {other.source}"
            if closeness is not None:
                left[article.id] += f" (score {closeness:.0f})"
            continue
        titles[article.title_key] = article
        queue = by_source.setdefault(article.source, [])
        cap = caps.get(article.source, per_source_cap)
        if len(queue) < cap:
            queue.append(article)
        else:
            left[article.id] = f"over the cap of {cap} stories from {article.source}"
    chosen: list[Article] = []
    while len(chosen) < count and any(by_source.values()):
        heads = sorted(
            (queue.pop(0) for queue in by_source.values() if queue),
            key=lambda article: (priority(article), article.published_at, article.id),
            reverse=True,
        )
        room = count - len(chosen)
        chosen.extend(heads[:room])
        for article in heads[room:]:
            left[article.id] = _below_cut(count, priority(article))
    for queue in by_source.values():
        for article in queue:
            left[article.id] = _below_cut(count, priority(article))
    if not explain:
        return Selection(chosen=chosen)
    place = {article.id: number for number, article in enumerate(chosen, start=1)}
    verdicts = [
        Verdict(
            title=article.title,
            source=article.source,
            published_at=article.published_at,
            taken=article.id in place,
            reason=(
                f"taken as story {place[article.id]}"
                + (f" (feed priority {priority(article)})" if priority(article) else "")
                if article.id in place
                else left.get(article.id, "left out")
            ),
        )
        for article in candidates
    ]
    verdicts.extend(_outside_window(session, now=now, since=since, oldest=oldest))
    return Selection(chosen=chosen, verdicts=verdicts)


def _twin(
    article: Article, titles: Mapping[str, Article], threshold: float
) -> tuple[Article, float | None] | None:
    """The story already kept today that ``article`` repeats: the same folded title (no score),
    or the closest within ``threshold`` (with its score)."""
    same = titles.get(article.title_key)
    if same is not None:
        return same, None
    if threshold >= 100:
        return None
    best: tuple[Article, float] | None = None
    for key, other in titles.items():
        score = similarity(article.title_key, key)
        if score >= threshold and (best is None or score > best[1]):
            best = (other, score)
    return best


def _below_cut(count: int, priority: int) -> str:
    reason = f"below the cut: the edition holds {count} stories"
    return reason + (f" (feed priority {priority})" if priority else "")


def _outside_window(
    session: Session, *, now: datetime, since: datetime | None, oldest: datetime | None
) -> list[Verdict]:
    """Unused stories fetched in the last two days that the window keeps out (for explaining)."""
    if since is None and oldest is None:
        return []
    start = max(moment for moment in (since, oldest) if moment is not None)
    fresh = now - timedelta(days=2)
    outside = [Article.published_at > now]
    if oldest is not None:
        outside.append(Article.published_at < oldest)
    if since is not None:
        outside.append(and_(Article.published_at < since, Article.first_seen_at < since))
    query = (
        select(Article)
        .where(
            Article.id.not_in(select(IssueArticle.article_id)),
            Article.first_seen_at >= fresh,
            or_(*outside),
        )
        .order_by(Article.published_at.desc(), Article.id.desc())
        .limit(100)
    )
    return [
        Verdict(
            title=article.title,
            source=article.source,
            published_at=article.published_at,
            taken=False,
            reason=(
                "dated after the build time"
                if article.published_at > now
                else f"too old: published before the window that starts {start:%Y-%m-%d %H:%M} UTC"
            ),
        )
        for article in session.scalars(query)
    ]


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
