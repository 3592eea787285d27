"""Fetching every configured source into the store. One failing source never stops the others.

The network part of every source runs concurrently (threads sharing one HTTP client); parsing and
storing happen one source at a time in the calling thread, each in its own transaction. What a
source answered last (validators for conditional GET, last success, last error) is kept in
``source_states``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kernel import insert_ignoring_conflicts
from newsletter.db import Database
from newsletter.errors import NewsletterError
from newsletter.models import Article, MarketGlobal, MarketSnapshot, SentimentReading, SourceState
from newsletter.sanitise import title_key
from newsletter.sources import validation
from newsletter.sources.feeds import FeedItem, FeedSource, parse_feed
from newsletter.sources.fetch import Fetched, Validators
from newsletter.sources.market import (
    CoinQuote,
    MarketSource,
    MarketTotals,
    Sentiment,
    SentimentSource,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SourceOutcome:
    """What one source gave: how many items, how many were new, or why it failed."""

    name: str
    kind: str
    items: int = 0
    new: int = 0
    error: str | None = None
    not_modified: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class _Job:
    """One source: ``download`` runs in a worker thread, ``store`` in the caller's transaction."""

    key: str
    name: str
    kind: str
    download: Callable[[Validators | None], Any]
    store: Callable[[Session, Any, datetime], tuple[int, int]]
    conditional: bool = False


def fetch_sources(
    database: Database,
    *,
    feeds: Sequence[FeedSource],
    market: MarketSource | None,
    sentiment: SentimentSource | None = None,
    now: datetime,
    concurrency: int = 8,
) -> list[SourceOutcome]:
    """Fetch every source; return one outcome per source, in the order they were configured."""
    jobs = _jobs(feeds=feeds, market=market, sentiment=sentiment, now=now)
    with database.transaction(readonly=True) as session:
        validators = {
            state.key: Validators(state.etag, state.last_modified)
            for state in session.scalars(select(SourceState))
        }
    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(jobs) or 1))) as pool:
        futures: list[tuple[_Job, Future[Any]]] = [
            (job, pool.submit(job.download, validators.get(job.key) if job.conditional else None))
            for job in jobs
        ]
        return [_finish(database, job, future, now=now) for job, future in futures]


def _jobs(
    *,
    feeds: Sequence[FeedSource],
    market: MarketSource | None,
    sentiment: SentimentSource | None,
    now: datetime,
) -> list[_Job]:
    jobs: list[_Job] = []
    if market is not None:
        currency = market.vs_currency

        def store_quotes_job(
            session: Session, quotes: list[CoinQuote], fetched_at: datetime
        ) -> tuple[int, int]:
            if not quotes:
                raise NewsletterError("the response held none of the configured coins")
            store_quotes(session, quotes, vs_currency=currency, fetched_at=fetched_at)
            return len(quotes), len(quotes)

        def store_totals_job(
            session: Session, totals: MarketTotals, fetched_at: datetime
        ) -> tuple[int, int]:
            store_totals(session, totals, vs_currency=currency, fetched_at=fetched_at)
            return 1, 1

        jobs.append(
            _Job("market", market.name, "market", lambda _: market.fetch(), store_quotes_job)
        )
        if market.top_coins > 0:
            jobs.append(
                _Job(
                    "market:top",
                    "top coins",
                    "market",
                    lambda _: market.fetch_top(),
                    store_quotes_job,
                )
            )
        jobs.append(
            _Job(
                "market:global",
                "market totals",
                "market",
                lambda _: market.fetch_totals(),
                store_totals_job,
            )
        )
    if sentiment is not None:
        jobs.append(
            _Job(
                "sentiment",
                sentiment.name,
                "sentiment",
                lambda _: sentiment.fetch(),
                lambda session, reading, fetched_at: store_sentiment(
                    session, reading, fetched_at=fetched_at
                ),
            )
        )
    for feed in feeds:
        jobs.append(
            _Job(
                f"feed:{feed.name}",
                feed.name,
                "feed",
                feed.fetch_if_changed,
                _feed_store(feed, now=now),
                conditional=True,
            )
        )
    return jobs


def _feed_store(
    feed: FeedSource, *, now: datetime
) -> Callable[[Session, Fetched, datetime], tuple[int, int]]:
    def store(session: Session, fetched: Fetched, fetched_at: datetime) -> tuple[int, int]:
        items = parse_feed(fetched.body, source=feed.name, now=now)
        return len(items), store_items(session, items, first_seen_at=fetched_at)

    return store


def _finish(database: Database, job: _Job, future: Future[Any], *, now: datetime) -> SourceOutcome:
    try:
        result = future.result()
        if isinstance(result, Fetched) and result.not_modified:
            with database.transaction() as session:
                _remember(session, job.key, now=now, validators=result.validators, error=None)
            return SourceOutcome(job.name, job.kind, not_modified=True)
        with database.transaction() as session:
            items, new = job.store(session, result, now)
            validators = result.validators if isinstance(result, Fetched) else None
            _remember(session, job.key, now=now, validators=validators, error=None)
        log.info("%s: %d items, %d new", job.name, items, new)
        return SourceOutcome(job.name, job.kind, items=items, new=new)
    except NewsletterError as exc:
        log.warning("%s skipped: %s", job.name, exc.message)
        error = exc.message
    except Exception as exc:  # one broken source must not stop the others
        log.exception("%s skipped after an unexpected error", job.name)
        error = f"unexpected error: {exc!r}"
    try:
        with database.transaction() as session:
            _remember(session, job.key, now=now, validators=None, error=error)
    except NewsletterError:
        log.exception("could not record the failure of %s", job.name)
    return SourceOutcome(job.name, job.kind, error=error)


def _remember(
    session: Session, key: str, *, now: datetime, validators: Validators | None, error: str | None
) -> None:
    state = session.get(SourceState, key)
    if state is None:
        state = SourceState(key=key, failures=0)
        session.add(state)
    state.last_fetched_at = now
    if error is None:
        state.last_success_at = now
        state.last_error = None
        state.failures = 0
        if validators is not None:
            state.etag = validators.etag
            state.last_modified = validators.last_modified
    else:
        state.last_error = error[:2000]
        state.failures = (state.failures or 0) + 1


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
            source_updated_at=_not_future(quote.source_updated_at, fetched_at, quote.coin_id),
            fetched_at=fetched_at,
        )
        for quote in quotes
    )


def _not_future(stamp: datetime | None, fetched_at: datetime, what: str) -> datetime | None:
    """A source's timestamp, or the fetch time when the source claims a time still to come."""
    trusted = validation.not_future(stamp, fetched_at=fetched_at)
    if trusted is not stamp:
        validation.REJECTIONS.record(
            "coins" if what != "totals" else "totals",
            "timestamp",
            f"{stamp} is in the future (fetched at {fetched_at}); using the fetch time",
            source="market data",
            what=what,
        )
    return trusted


def store_totals(
    session: Session, totals: MarketTotals, *, vs_currency: str, fetched_at: datetime
) -> None:
    session.add(
        MarketGlobal(
            vs_currency=vs_currency,
            total_market_cap=totals.total_market_cap,
            total_volume=totals.total_volume,
            market_cap_change_24h=totals.market_cap_change_24h,
            btc_dominance=totals.btc_dominance,
            eth_dominance=totals.eth_dominance,
            source_updated_at=_not_future(totals.source_updated_at, fetched_at, "totals"),
            fetched_at=fetched_at,
        )
    )


def store_sentiment(
    session: Session, reading: Sentiment, *, fetched_at: datetime
) -> tuple[int, int]:
    statement = insert_ignoring_conflicts(session, SentimentReading, index_elements=["measured_at"])
    result = session.execute(
        statement.values(
            value=reading.value,
            label=reading.label,
            measured_at=validation.not_future(reading.measured_at, fetched_at=fetched_at)
            or fetched_at,
            fetched_at=fetched_at,
        ).returning(SentimentReading.id)
    )
    return 1, len(result.all())


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
