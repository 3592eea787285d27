"""What goes into an edition: the day's stories and the market picture, with computed insights.

Everything here is derived from stored data by deterministic rules: no invented facts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from newsletter.formatting import (
    change_arrow,
    change_direction,
    format_change,
    format_large,
    format_price,
    sparkline,
)
from newsletter.models import (
    Article,
    Issue,
    IssueArticle,
    IssueStatus,
    MarketGlobal,
    MarketSnapshot,
    SentimentReading,
)

#: The sections of an edition, in order; subscribers choose among them.
SECTIONS = ("market", "movers", "stories")


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
class Sponsor:
    """A paid placement, always labelled as such."""

    text: str
    url: str
    label: str = "Sponsored"


@dataclass(frozen=True, slots=True)
class CoinRow:
    coin_id: str
    symbol: str
    name: str
    price: float
    change_24h: float | None
    change_7d: float | None
    trend: str
    currency: str

    @property
    def price_text(self) -> str:
        return format_price(self.price, self.currency)

    @property
    def change_24h_text(self) -> str:
        return format_change(self.change_24h)

    @property
    def change_7d_text(self) -> str:
        return format_change(self.change_7d)

    @property
    def arrow_24h(self) -> str:
        return change_arrow(self.change_24h)

    @property
    def arrow_7d(self) -> str:
        return change_arrow(self.change_7d)

    @property
    def direction_24h(self) -> str:
        return change_direction(self.change_24h)

    @property
    def direction_7d(self) -> str:
        return change_direction(self.change_7d)


@dataclass(frozen=True, slots=True)
class Totals:
    """The whole market: total capitalisation, its 24 h change, Bitcoin's share."""

    market_cap: float | None
    market_cap_change_24h: float | None
    btc_dominance: float | None
    currency: str

    @property
    def market_cap_text(self) -> str:
        return format_large(self.market_cap, self.currency)

    @property
    def change_text(self) -> str:
        return format_change(self.market_cap_change_24h)

    @property
    def arrow(self) -> str:
        return change_arrow(self.market_cap_change_24h)

    @property
    def direction(self) -> str:
        return change_direction(self.market_cap_change_24h)

    @property
    def dominance_text(self) -> str:
        return "n/a" if self.btc_dominance is None else f"{self.btc_dominance:.1f}%"


@dataclass(frozen=True, slots=True)
class Mood:
    """The Fear & Greed index: 0 (extreme fear) to 100 (extreme greed)."""

    value: int
    label: str
    measured_at: datetime


@dataclass(frozen=True, slots=True)
class Market:
    coins: tuple[CoinRow, ...]
    as_of: datetime
    stale: bool
    gainers: tuple[CoinRow, ...]
    losers: tuple[CoinRow, ...]
    summary: str
    fetched_at: datetime
    totals: Totals | None = None
    mood: Mood | None = None
    movers_from: int = 0


@dataclass(frozen=True, slots=True)
class Digest:
    edition_date: date
    stories: tuple[Story, ...]
    market: Market | None
    sponsor: Sponsor | None = None
    #: The sections shown (a subscriber may choose fewer).
    sections: frozenset[str] = frozenset(SECTIONS)

    def subject(self, newsletter_name: str) -> str:
        """``BTC $63,957 (+0.6%) · 8 stories · Tue 24 Nov``."""
        day = f"{self.edition_date:%a} {self.edition_date.day} {self.edition_date:%b}"
        stories = f"{len(self.stories)} {'story' if len(self.stories) == 1 else 'stories'}"
        lead = self.market.coins[0] if self.market and self.market.coins else None
        if lead is None:
            return f"{newsletter_name} · {stories} · {day}"
        price = format_price(lead.price, lead.currency, cents=lead.price < 100)
        return f"{lead.symbol} {price} ({format_change(lead.change_24h)}) · {stories} · {day}"

    def preheader(self) -> str:
        if self.market is not None:
            return self.market.summary
        if self.stories:
            return self.stories[0].title
        return "Today's crypto market and the stories worth reading."


# Stories


def select_articles(
    session: Session,
    *,
    count: int,
    now: datetime,
    since: datetime | None,
    per_source_cap: int,
    source_caps: Mapping[str, int] | None = None,
) -> list[Article]:
    """The edition's stories: new since ``since``, never used by another edition, sources mixed.

    A story counts as new when it was published, or first seen, since ``since`` (a feed that lags
    still gets its stories in). Duplicates across feeds (same normalised title) count once. The
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


# Market


def latest_market(
    session: Session,
    *,
    coins: Sequence[str],
    now: datetime,
    max_age: timedelta,
    top_coins: int = 100,
) -> Market | None:
    """The newest stored snapshot of the watchlist with its context, or None when there is none."""
    fetched_at = session.scalar(select(func.max(MarketSnapshot.fetched_at)))
    if fetched_at is None:
        return None
    return market_at(
        session, fetched_at, coins=coins, now=now, max_age=max_age, top_coins=top_coins
    )


def market_at(
    session: Session,
    fetched_at: datetime,
    *,
    coins: Sequence[str],
    now: datetime,
    max_age: timedelta,
    top_coins: int = 100,
) -> Market | None:
    """The market picture of one fetch (what an edition showed), for the coins given."""
    rows: dict[str, MarketSnapshot] = {}
    for row in session.scalars(
        select(MarketSnapshot)
        .where(MarketSnapshot.fetched_at == fetched_at)
        .order_by(MarketSnapshot.id)
    ):
        rows[row.coin_id] = row  # the watchlist request is stored last and wins
    watchlist = [rows[coin] for coin in coins if coin in rows]
    if not watchlist:
        return None
    ranked = [
        row
        for row in rows.values()
        if row.market_cap_rank is not None and row.market_cap_rank <= top_coins
    ]
    updated = [row.source_updated_at for row in watchlist if row.source_updated_at is not None]
    as_of = max(updated) if updated else fetched_at
    # Context from the same fetch run (totals) and the same days (the index is published daily).
    totals_row = session.scalar(
        select(MarketGlobal)
        .where(MarketGlobal.fetched_at >= fetched_at - timedelta(hours=1))
        .order_by(MarketGlobal.fetched_at.desc(), MarketGlobal.id.desc())
    )
    mood_row = session.scalar(
        select(SentimentReading)
        .where(SentimentReading.measured_at >= as_of - timedelta(days=2))
        .order_by(SentimentReading.measured_at.desc())
    )
    totals = None
    if totals_row is not None:
        totals = Totals(
            market_cap=totals_row.total_market_cap,
            market_cap_change_24h=totals_row.market_cap_change_24h,
            btc_dominance=totals_row.btc_dominance,
            currency=totals_row.vs_currency,
        )
    mood = None
    if mood_row is not None:
        mood = Mood(value=mood_row.value, label=mood_row.label, measured_at=mood_row.measured_at)
    return build_market(
        watchlist,
        now=now,
        max_age=max_age,
        fetched_at=fetched_at,
        movers=ranked if top_coins > 0 and len(ranked) > len(watchlist) else None,
        totals=totals,
        mood=mood,
    )


def _row(snapshot: MarketSnapshot) -> CoinRow:
    return CoinRow(
        coin_id=snapshot.coin_id,
        symbol=snapshot.symbol,
        name=snapshot.name,
        price=snapshot.price,
        change_24h=snapshot.change_24h,
        change_7d=snapshot.change_7d,
        trend=sparkline(snapshot.sparkline_7d or ()),
        currency=snapshot.vs_currency,
    )


def build_market(
    snapshots: Sequence[MarketSnapshot],
    *,
    now: datetime,
    max_age: timedelta,
    fetched_at: datetime,
    movers: Sequence[MarketSnapshot] | None = None,
    totals: Totals | None = None,
    mood: Mood | None = None,
) -> Market:
    """The market section from stored rows; movers from ``movers`` (the top coins) or the watchlist."""
    coins = tuple(_row(row) for row in snapshots)
    updated = [row.source_updated_at for row in snapshots if row.source_updated_at is not None]
    as_of = max(updated) if updated else fetched_at
    pool = [_row(row) for row in movers] if movers else list(coins)
    ranked = sorted(
        (coin for coin in pool if coin.change_24h is not None),
        key=lambda coin: coin.change_24h or 0.0,
        reverse=True,
    )
    gainers = tuple(coin for coin in ranked[:3] if round(coin.change_24h or 0, 1) > 0)
    losers = tuple(coin for coin in reversed(ranked[-3:]) if round(coin.change_24h or 0, 1) < 0)
    return Market(
        coins=coins,
        as_of=as_of,
        stale=now - as_of > max_age,
        gainers=gainers,
        losers=losers,
        summary=summary_line(coins),
        fetched_at=fetched_at,
        totals=totals,
        mood=mood,
        movers_from=len(pool),
    )


def summary_line(coins: Sequence[CoinRow]) -> str:
    """One sentence on the day, from the numbers alone.

    ``Bitcoin rose 0.6% to $63,957.00 in 24 h; 10 of 17 tracked coins are up, SUI leading (+2.4%)
    and SOL trailing (-1.3%).``
    """
    known = [coin for coin in coins if coin.change_24h is not None]
    if not known:
        return "Prices are in; 24-hour changes are not available."
    lead = known[0]
    change = lead.change_24h or 0.0
    if round(change, 1) == 0:
        move = f"held steady at {lead.price_text}"
    else:
        verb = "rose" if change > 0 else "fell"
        move = f"{verb} {abs(round(change, 1)):.1f}% to {lead.price_text}"
    sentence = f"{lead.name} {move} in 24 h"
    if len(known) < 2:
        return sentence + "."
    up = sum(1 for coin in known if round(coin.change_24h or 0.0, 1) > 0)
    best = max(known, key=lambda coin: coin.change_24h or 0.0)
    worst = min(known, key=lambda coin: coin.change_24h or 0.0)
    sentence += f"; {up} of {len(known)} tracked coins are up"
    if (best.change_24h or 0) > 0:
        sentence += f", {best.symbol} leading ({best.change_24h_text})"
        if (worst.change_24h or 0) < 0:
            sentence += f" and {worst.symbol} trailing ({worst.change_24h_text})"
    elif (worst.change_24h or 0) < 0:
        sentence += f", {worst.symbol} falling most ({worst.change_24h_text})"
    return sentence + "."
