"""What goes into an edition: the day's stories and the market picture, with computed insights.

Everything here is derived from stored data by deterministic rules: no invented facts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.formatting import (
    change_arrow,
    change_direction,
    format_change,
    format_price,
    sparkline,
)
from newsletter.models import Article, IssueArticle, MarketSnapshot


@dataclass(frozen=True, slots=True)
class Story:
    title: str
    url: str
    source: str
    published_at: datetime
    teaser: str
    author: str | None = None


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
class Market:
    coins: tuple[CoinRow, ...]
    as_of: datetime
    stale: bool
    gainers: tuple[CoinRow, ...]
    losers: tuple[CoinRow, ...]
    summary: str
    fetched_at: datetime


@dataclass(frozen=True, slots=True)
class Digest:
    edition_date: date
    stories: tuple[Story, ...]
    market: Market | None

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
    max_age: timedelta | None,
    per_source_cap: int,
    source_caps: Mapping[str, int] | None = None,
) -> list[Article]:
    """The edition's stories: the newest not yet used by any edition, one per story, sources mixed.

    Duplicates across feeds (same normalised title) count once; no source gives more than its cap.
    """
    used = select(IssueArticle.article_id)
    query = (
        select(Article)
        .where(Article.id.not_in(used), Article.published_at <= now)
        .order_by(Article.published_at.desc(), Article.id.desc())
        .limit(max(count * 20, 100))
    )
    if max_age is not None:
        query = query.where(Article.published_at >= now - max_age)
    caps = dict(source_caps or {})
    taken: Counter[str] = Counter()
    titles: set[str] = set()
    chosen: list[Article] = []
    for article in session.scalars(query):
        if article.title_key in titles:
            continue
        if taken[article.source] >= caps.get(article.source, per_source_cap):
            continue
        chosen.append(article)
        titles.add(article.title_key)
        taken[article.source] += 1
        if len(chosen) == count:
            break
    return chosen


def stories_from(articles: Sequence[Article]) -> tuple[Story, ...]:
    return tuple(
        Story(
            title=article.title,
            url=article.url,
            source=article.source,
            published_at=article.published_at,
            teaser=article.summary,
            author=article.author,
        )
        for article in articles
    )


# Market


def latest_market(
    session: Session, *, coins: Sequence[str], now: datetime, max_age: timedelta
) -> Market | None:
    """The newest stored snapshot of the watchlist, or None when there has never been one."""
    fetched_at = session.scalar(select(func.max(MarketSnapshot.fetched_at)))
    if fetched_at is None:
        return None
    rows = session.scalars(
        select(MarketSnapshot).where(
            MarketSnapshot.fetched_at == fetched_at, MarketSnapshot.coin_id.in_(coins)
        )
    ).all()
    if not rows:
        return None
    order = {coin: position for position, coin in enumerate(coins)}
    snapshots = sorted(rows, key=lambda row: order[row.coin_id])
    return build_market(snapshots, now=now, max_age=max_age, fetched_at=fetched_at)


def build_market(
    snapshots: Sequence[MarketSnapshot], *, now: datetime, max_age: timedelta, fetched_at: datetime
) -> Market:
    coins = tuple(
        CoinRow(
            coin_id=row.coin_id,
            symbol=row.symbol,
            name=row.name,
            price=row.price,
            change_24h=row.change_24h,
            change_7d=row.change_7d,
            trend=sparkline(row.sparkline_7d or ()),
            currency=row.vs_currency,
        )
        for row in snapshots
    )
    updated = [row.source_updated_at for row in snapshots if row.source_updated_at is not None]
    as_of = max(updated) if updated else fetched_at
    movers = sorted(
        (coin for coin in coins if coin.change_24h is not None),
        key=lambda coin: coin.change_24h or 0.0,
        reverse=True,
    )
    gainers = tuple(coin for coin in movers[:3] if (coin.change_24h or 0) > 0)
    losers = tuple(coin for coin in reversed(movers[-3:]) if (coin.change_24h or 0) < 0)
    return Market(
        coins=coins,
        as_of=as_of,
        stale=now - as_of > max_age,
        gainers=gainers,
        losers=losers,
        summary=summary_line(coins),
        fetched_at=fetched_at,
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
