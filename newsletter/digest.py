"""What goes into an edition: the day's stories and the market picture, with computed insights.

Everything here is derived from stored data by deterministic rules: no invented facts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.formatting import (
    change_arrow,
    change_direction,
    format_change,
    format_large,
    format_price,
    sparkline,
)
from newsletter.headlines import stale_prefix, subject_line, summary_line
from newsletter.market_trust import checked, previous_prices, trusted, trusted_as_of
from newsletter.models import (
    MarketGlobal,
    MarketSnapshot,
    SentimentReading,
)
from newsletter.movers import is_mirror
from newsletter.sources import validation
from newsletter.stories import Story as Story
from newsletter.stories import select_articles as select_articles
from newsletter.stories import stories_from as stories_from
from newsletter.stories import window_start as window_start
from subscribers.preferences import SECTIONS as SECTIONS


@dataclass(frozen=True, slots=True)
class Sponsor:
    """A paid placement, always labelled as such."""

    text: str
    #: Where the sponsor wants readers to go.
    url: str
    label: str = "Sponsored"
    name: str = ""
    #: The link the edition carries: ``url``, or the counting redirect when clicks are counted.
    href: str = ""
    #: An https image shown above the text, if any.
    image_url: str | None = None
    #: The stored placement (None for a ``[[sponsors]]`` slot of the settings).
    placement_id: int | None = None

    @property
    def link(self) -> str:
        return self.href or self.url


@dataclass(frozen=True, slots=True)
class CoinRow:
    coin_id: str
    symbol: str
    name: str
    price: float | None
    change_24h: float | None
    change_7d: float | None
    trend: str
    currency: str

    @property
    def price_text(self) -> str:
        return "n/a" if self.price is None else format_price(self.price, self.currency)

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
        """``BTC $63,957 (+0.6%) · 8 stories · Tue 24 Nov``; no price when the prices are stale."""
        return subject_line(
            newsletter_name,
            edition_date=self.edition_date,
            stories=len(self.stories),
            lead=self.market.coins[0] if self.market and self.market.coins else None,
            stale=bool(self.market and self.market.stale),
        )

    def summary(self, timezone: str = "UTC") -> str:
        """The market summary, starting with the time of the prices when they are stale."""
        if self.market is None:
            return ""
        if self.market.stale:
            return stale_prefix(self.market.as_of, timezone) + self.market.summary
        return self.market.summary

    def preheader(self, timezone: str = "UTC") -> str:
        if self.market is not None:
            return self.summary(timezone)
        if self.stories:
            return self.stories[0].title
        return "Today's crypto market and the stories worth reading."


# Market


def latest_market(
    session: Session,
    *,
    coins: Sequence[str],
    now: datetime,
    max_age: timedelta,
    top_coins: int = 100,
    jump_factor: float | None = None,
) -> Market | None:
    """The newest stored snapshot of the watchlist with its context, or None when there is none."""
    fetched_at = session.scalar(select(func.max(MarketSnapshot.fetched_at)))
    if fetched_at is None:
        return None
    return market_at(
        session,
        fetched_at,
        coins=coins,
        now=now,
        max_age=max_age,
        top_coins=top_coins,
        jump_factor=jump_factor,
    )


def market_at(
    session: Session,
    fetched_at: datetime,
    *,
    coins: Sequence[str],
    now: datetime,
    max_age: timedelta,
    top_coins: int = 100,
    jump_factor: float | None = None,
) -> Market | None:
    """The market picture of one fetch (what an edition showed), for the coins given.

    With ``jump_factor`` a price beyond that factor from the coin's previous reading is held (n/a).
    """
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
    as_of = trusted_as_of((row.source_updated_at for row in watchlist), fetched_at=fetched_at)
    # Context from the same fetch run (totals) and the same days (the index is published daily).
    totals_row = session.scalar(
        select(MarketGlobal)
        .where(MarketGlobal.fetched_at >= fetched_at - timedelta(hours=1))
        .order_by(MarketGlobal.fetched_at.desc(), MarketGlobal.id.desc())
    )
    mood_row = session.scalar(
        select(SentimentReading)
        .where(SentimentReading.measured_at >= as_of - timedelta(days=2))
        .where(SentimentReading.measured_at <= fetched_at + validation.CLOCK_SKEW)
        .order_by(SentimentReading.measured_at.desc())
    )
    totals = None
    if totals_row is not None:
        totals = Totals(
            market_cap=checked("total_market_cap", totals_row.total_market_cap),
            market_cap_change_24h=checked(
                "market_cap_change_24h", totals_row.market_cap_change_24h
            ),
            btc_dominance=checked("btc_dominance", totals_row.btc_dominance),
            currency=totals_row.vs_currency,
        )
    mood = None
    if mood_row is not None and checked("fear_greed", mood_row.value) is not None:
        mood = Mood(value=mood_row.value, label=mood_row.label, measured_at=mood_row.measured_at)
    previous = None
    if jump_factor is not None:
        previous = previous_prices(
            session,
            [row.coin_id for row in [*watchlist, *ranked]],
            before=fetched_at,
            vs_currency=watchlist[0].vs_currency,
        )
    return build_market(
        watchlist,
        now=now,
        max_age=max_age,
        fetched_at=fetched_at,
        movers=ranked if top_coins > 0 and len(ranked) > len(watchlist) else None,
        totals=totals,
        mood=mood,
        previous=previous,
        jump_factor=jump_factor,
    )


def _row(
    snapshot: MarketSnapshot,
    *,
    previous: Mapping[str, float] | None = None,
    jump_factor: float | None = None,
) -> CoinRow:
    values = trusted(
        snapshot,
        previous_price=(previous or {}).get(snapshot.coin_id),
        jump_factor=jump_factor if previous is not None else None,
    )
    return CoinRow(
        coin_id=snapshot.coin_id,
        symbol=validation.clean_label("symbol", snapshot.symbol) or "?",
        name=validation.clean_label("name", snapshot.name) or snapshot.coin_id,
        price=values.price,
        change_24h=values.change_24h,
        change_7d=values.change_7d,
        trend=sparkline(values.sparkline),
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
    previous: Mapping[str, float] | None = None,
    jump_factor: float | None = None,
) -> Market:
    """The market section from stored rows; movers from ``movers`` (the top coins) or the watchlist.

    Stablecoins and wrapped, staked or bridged tokens are never movers (``newsletter.movers``).
    """
    coins = tuple(_row(row, previous=previous, jump_factor=jump_factor) for row in snapshots)
    as_of = trusted_as_of((row.source_updated_at for row in snapshots), fetched_at=fetched_at)
    pool = (
        [_row(row, previous=previous, jump_factor=jump_factor) for row in movers]
        if movers
        else list(coins)
    )
    considered = len(pool)
    pool = [coin for coin in pool if not is_mirror(coin.coin_id, coin.symbol, coin.name)]
    ranked = sorted(
        (coin for coin in pool if coin.change_24h is not None and coin.price is not None),
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
        movers_from=considered,
    )
