"""Fetching every configured source into the store. One failing source never stops the others."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from newsletter.db import Database
from newsletter.errors import NewsletterError
from newsletter.models import Article, MarketSnapshot
from newsletter.sanitise import title_key
from newsletter.sources.feeds import FeedItem, FeedSource
from newsletter.sources.market import CoinQuote, MarketSource
from subscribers.base import insert_ignoring_conflicts

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SourceOutcome:
    """What one source gave: how many items, how many were new, or why it failed."""

    name: str
    kind: str
    items: int = 0
    new: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def fetch_sources(
    database: Database,
    *,
    feeds: Sequence[FeedSource],
    market: MarketSource | None,
    now: datetime,
) -> list[SourceOutcome]:
    outcomes = []
    if market is not None:
        outcomes.append(_fetch_market(database, market, now=now))
    for feed in feeds:
        outcomes.append(_fetch_feed(database, feed, now=now))
    return outcomes


def _fetch_market(database: Database, market: MarketSource, *, now: datetime) -> SourceOutcome:
    try:
        quotes = market.fetch()
    except NewsletterError as exc:
        log.warning("market data skipped: %s", exc.message)
        return SourceOutcome(market.name, "market", error=exc.message)
    except Exception as exc:  # one broken source must not stop the others
        log.exception("market data skipped after an unexpected error")
        return SourceOutcome(market.name, "market", error=f"unexpected error: {exc!r}")
    if not quotes:
        message = "the response held none of the configured coins"
        log.warning("market data skipped: %s", message)
        return SourceOutcome(market.name, "market", error=message)
    with database.transaction() as session:
        store_quotes(session, quotes, vs_currency=market.vs_currency, fetched_at=now)
    return SourceOutcome(market.name, "market", items=len(quotes), new=len(quotes))


def _fetch_feed(database: Database, feed: FeedSource, *, now: datetime) -> SourceOutcome:
    try:
        items = feed.fetch(now=now)
    except NewsletterError as exc:
        log.warning("feed %s skipped: %s", feed.name, exc.message)
        return SourceOutcome(feed.name, "feed", error=exc.message)
    except Exception as exc:  # one broken source must not stop the others
        log.exception("feed %s skipped after an unexpected error", feed.name)
        return SourceOutcome(feed.name, "feed", error=f"unexpected error: {exc!r}")
    with database.transaction() as session:
        new = store_items(session, items, first_seen_at=now)
    return SourceOutcome(feed.name, "feed", items=len(items), new=new)


def store_quotes(
    session: Session, quotes: Sequence[CoinQuote], *, vs_currency: str, fetched_at: datetime
) -> None:
    session.add_all(
        MarketSnapshot(
            coin_id=quote.coin_id,
            symbol=quote.symbol,
            name=quote.name,
            vs_currency=vs_currency,
            price=quote.price,
            market_cap=quote.market_cap,
            market_cap_rank=quote.market_cap_rank,
            change_24h=quote.change_24h,
            change_7d=quote.change_7d,
            sparkline_7d=list(quote.sparkline_7d) or None,
            image_url=quote.image_url,
            source_updated_at=quote.source_updated_at,
            fetched_at=fetched_at,
        )
        for quote in quotes
    )


def store_items(session: Session, items: Sequence[FeedItem], *, first_seen_at: datetime) -> int:
    """Insert the items not seen before (by source and GUID, or by canonical URL); return how many."""
    if not items:
        return 0
    statement = insert_ignoring_conflicts(session, Article)
    rows = [
        {
            "source": item.source,
            "guid": item.guid,
            "url": item.url,
            "title": item.title,
            "title_key": title_key(item.title),
            "summary": item.summary,
            "author": item.author,
            "image_url": item.image_url,
            "published_at": item.published_at,
            "first_seen_at": first_seen_at,
        }
        for item in _unique(items)
    ]
    result = session.execute(statement.returning(Article.id), rows)
    return len(result.all())


def _unique(items: Sequence[FeedItem]) -> list[FeedItem]:
    """Drop repeats inside one fetch (a feed listing a GUID or a link twice)."""
    seen_guids: set[str] = set()
    seen_urls: set[str] = set()
    unique = []
    for item in items:
        if item.guid in seen_guids or item.url in seen_urls:
            continue
        seen_guids.add(item.guid)
        seen_urls.add(item.url)
        unique.append(item)
    return unique
