"""Fetching the sources as a use case: every source once, over one HTTP client per fetch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import func, select

from newsletter.coins import followed_coins
from newsletter.db import Database
from newsletter.ingest import SourceOutcome, fetch_sources
from newsletter.models import SourceState
from newsletter.sources.feeds import FeedSource
from newsletter.sources.fetch import Fetcher
from newsletter.sources.market import MarketSource, SentimentSource

#: The most coins one market request asks for (the API's page size).
MAX_MARKET_IDS = 250


@dataclass(frozen=True, slots=True)
class Sources:
    """The configured sources, built over a fresh :class:`Fetcher` for each fetch."""

    database: Database
    fetcher: Callable[[], Fetcher]
    feeds: Callable[[Fetcher], list[FeedSource]]
    market: Callable[[Fetcher], MarketSource]
    sentiment: Callable[[Fetcher], SentimentSource | None]
    concurrency: int

    def fetch(self, *, now: datetime) -> list[SourceOutcome]:
        """Fetch every source once, over one HTTP client that is closed when the fetch ends.

        The market request asks for the newsletter's coins and every coin a reader follows (up to
        the request's limit), so that a followed coin has its price even if it leaves the top coins.
        """
        with self.database.transaction(readonly=True) as session:
            followed = followed_coins(session)
        with self.fetcher() as fetcher:
            market = self.market(fetcher)
            extra = sorted(followed - set(market.coins))
            if extra:
                market = replace(market, coins=[*market.coins, *extra][:MAX_MARKET_IDS])
            return fetch_sources(
                self.database,
                feeds=self.feeds(fetcher),
                market=market,
                sentiment=self.sentiment(fetcher),
                now=now,
                concurrency=self.concurrency,
            )

    def last_fetched(self) -> datetime | None:
        """When any source was last fetched (None before the first fetch)."""
        with self.database.transaction(readonly=True) as session:
            return session.scalar(select(func.max(SourceState.last_fetched_at)))
