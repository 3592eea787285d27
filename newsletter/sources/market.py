"""Market data: a CoinGecko-compatible API (``/coins/markets``, ``/global``) and the Fear & Greed index.

A local ``base_url`` is a directory laid out like the API: ``coins/markets.json`` answers the watchlist
request, ``coins/markets_top100.json`` the top-coins request and ``global.json`` ``/global``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from newsletter.errors import SourceError
from newsletter.sources import validation
from newsletter.sources.fetch import Fetcher, is_remote

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CoinQuote:
    coin_id: str
    symbol: str
    name: str
    price: float
    market_cap: float | None
    market_cap_rank: int | None
    change_24h: float | None
    change_7d: float | None
    sparkline_7d: tuple[float, ...]
    image_url: str | None
    source_updated_at: datetime | None


@dataclass(frozen=True, slots=True)
class MarketTotals:
    """The whole market (``/global``)."""

    total_market_cap: float | None
    total_volume: float | None
    market_cap_change_24h: float | None
    btc_dominance: float | None
    eth_dominance: float | None
    source_updated_at: datetime | None


@dataclass(frozen=True, slots=True)
class Sentiment:
    """One Fear & Greed reading: 0 (extreme fear) to 100 (extreme greed)."""

    value: int
    label: str
    measured_at: datetime


@dataclass(frozen=True, slots=True)
class MarketSource:
    base_url: str
    coins: Sequence[str]
    vs_currency: str
    fetcher: Fetcher
    api_key: str | None = None
    top_coins: int = 100
    name: str = "market data"

    @property
    def _remote(self) -> bool:
        return is_remote(self.base_url)

    def _get(self, path: str, local: str, params: dict[str, str] | None = None) -> bytes:
        if not self._remote:
            return self.fetcher.read(str(Path(self.base_url) / local))
        headers = {"x-cg-demo-api-key": self.api_key} if self.api_key else None
        if self.api_key and "pro-api." in self.base_url:
            headers = {"x-cg-pro-api-key": self.api_key}
        return self.fetcher.read(
            f"{self.base_url.rstrip('/')}{path}", params=params, headers=headers
        )

    def _markets_params(self, **extra: str) -> dict[str, str]:
        return {
            "vs_currency": self.vs_currency,
            "order": "market_cap_desc",
            "page": "1",
            "sparkline": "true",
            "price_change_percentage": "24h,7d",
            **extra,
        }

    def fetch_top(self) -> list[CoinQuote]:
        """The top coins by market cap (for the day's biggest gainers and losers)."""
        if self.top_coins <= 0:
            return []
        body = self._get(
            "/coins/markets",
            "coins/markets_top100.json",
            self._markets_params(per_page=str(self.top_coins)),
        )
        quotes = parse_markets(body, source=self.base_url)
        ranked = [quote for quote in quotes if quote.market_cap_rank is not None]
        ranked.sort(key=lambda quote: quote.market_cap_rank or 0)
        return ranked[: self.top_coins]

    def fetch_totals(self) -> MarketTotals:
        return parse_global(
            self._get("/global", "global.json"), vs_currency=self.vs_currency, source=self.base_url
        )

    def fetch(self) -> list[CoinQuote]:
        """The watchlist, in the configured order."""
        body = self._get(
            "/coins/markets",
            "coins/markets.json",
            self._markets_params(ids=",".join(self.coins), per_page="250"),
        )
        quotes = parse_markets(body, source=self.base_url)
        wanted = {coin: position for position, coin in enumerate(self.coins)}
        chosen = [quote for quote in quotes if quote.coin_id in wanted]
        missing = set(wanted) - {quote.coin_id for quote in chosen}
        if missing:
            log.warning("market data has no price for: %s", ", ".join(sorted(missing)))
        return sorted(chosen, key=lambda quote: wanted[quote.coin_id])


def parse_markets(body: bytes, *, source: str) -> list[CoinQuote]:
    """Quotes from a ``/coins/markets`` response, every value checked (``validation``).

    A coin without a believable price, symbol or name is left out; any other failing value becomes
    None (shown as n/a). A response whose values mostly fail is a ``SourceError`` (unavailable).
    """
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SourceError(f"{source}: market data is not JSON ({exc})") from None
    if isinstance(data, dict) and "status" in data:
        raise SourceError(f"{source}: market data API refused the request: {data['status']}")
    if not isinstance(data, list):
        raise SourceError(f"{source}: market data is not a list of coins")
    tally = _Tally(source=source, part="coins")
    quotes = []
    for raw in data:
        quote = _quote(raw, tally)
        if quote is None:
            log.warning("%s: skipped a coin without a usable price or name: %.200r", source, raw)
            continue
        quotes.append(quote)
    if validation.mostly_failed(checked=len(data), failed=len(data) - len(quotes)):
        raise SourceError(
            f"{source}: market data is unusable: most of its values failed validation "
            f"({len(data) - len(quotes)} of {len(data)} coins without a believable price or name)"
        )
    tally.raise_if_mostly_failed("market data")
    return quotes


@dataclass(slots=True)
class _Tally:
    """Counts the values checked and refused in one response."""

    source: str
    part: str
    checked: int = 0
    failed: int = 0

    def number(self, field: str, value: Any, *, what: str = "") -> float | None:
        self.checked += 1
        result = validation.check(field, value)
        if result.reason is not None:
            self.failed += 1
            validation.REJECTIONS.record(
                self.part, field, result.reason, source=self.source, what=what
            )
        return result.value

    def label(self, field: str, value: Any, *, what: str = "") -> str | None:
        self.checked += 1
        text = validation.clean_label(field, value)
        if text is None:
            self.failed += 1
            validation.REJECTIONS.record(
                self.part, field, f"malformed {field} {value!r:.60}", source=self.source, what=what
            )
        return text

    def raise_if_mostly_failed(self, what: str) -> None:
        if validation.mostly_failed(checked=self.checked, failed=self.failed):
            raise SourceError(
                f"{self.source}: {what} is unusable: most of its values failed validation "
                f"({self.failed} of {self.checked})"
            )


def _quote(raw: Any, tally: _Tally) -> CoinQuote | None:
    if not isinstance(raw, dict):
        tally.checked += 1
        tally.failed += 1
        return None
    coin_id = raw.get("id")
    if not isinstance(coin_id, str) or validation.clean_label("symbol", coin_id[:20]) is None:
        tally.checked += 1
        tally.failed += 1
        return None
    what = coin_id[:40]
    symbol = tally.label("symbol", raw.get("symbol"), what=what)
    name = tally.label("name", raw.get("name"), what=what)
    price = tally.number("price", raw.get("current_price"), what=what)
    if raw.get("current_price") is None:  # checked above, but missing is no failure elsewhere
        tally.failed += 1
        validation.REJECTIONS.record("coins", "price", "missing", source=tally.source, what=what)
    series = raw.get("sparkline_in_7d")
    points = series.get("price") if isinstance(series, dict) else None
    sparkline = tuple(
        number
        for number in (
            validation.check("sparkline", value).value
            for value in (points if isinstance(points, list) else ())
        )
        if number is not None
    )
    rank = tally.number("market_cap_rank", raw.get("market_cap_rank"), what=what)
    market_cap = tally.number("market_cap", raw.get("market_cap"), what=what)
    change_24h = tally.number(
        "change_24h",
        raw.get("price_change_percentage_24h_in_currency", raw.get("price_change_percentage_24h")),
        what=what,
    )
    change_7d = tally.number(
        "change_7d", raw.get("price_change_percentage_7d_in_currency"), what=what
    )
    if symbol is None or name is None or price is None:
        return None
    image = raw.get("image")
    return CoinQuote(
        coin_id=coin_id[:100],
        symbol=symbol.upper(),
        name=name,
        price=price,
        market_cap=market_cap,
        market_cap_rank=int(rank) if rank is not None else None,
        change_24h=change_24h,
        change_7d=change_7d,
        sparkline_7d=sparkline,
        image_url=image if isinstance(image, str) and image.startswith("https://") else None,
        source_updated_at=_timestamp(raw.get("last_updated")),
    )


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp if stamp.tzinfo else None


def parse_global(body: bytes, *, vs_currency: str, source: str) -> MarketTotals:
    """Totals from a ``/global`` response."""
    data = _json(body, source=source, what="market totals")
    inner = data.get("data") if isinstance(data, dict) else None
    if not isinstance(inner, dict):
        raise SourceError(f"{source}: market totals have no 'data' object")

    tally = _Tally(source=source, part="totals")

    def currency(key: str) -> float | None:
        table = inner.get(key)
        return tally.number(key, table.get(vs_currency) if isinstance(table, dict) else None)

    shares = inner.get("market_cap_percentage")
    shares = shares if isinstance(shares, dict) else {}
    updated = inner.get("updated_at")
    totals = MarketTotals(
        total_market_cap=currency("total_market_cap"),
        total_volume=currency("total_volume"),
        market_cap_change_24h=tally.number(
            "market_cap_change_24h", inner.get("market_cap_change_percentage_24h_usd")
        ),
        btc_dominance=tally.number("btc_dominance", shares.get("btc")),
        eth_dominance=tally.number("eth_dominance", shares.get("eth")),
        source_updated_at=_unix(updated),
    )
    tally.raise_if_mostly_failed("the market totals response")
    return totals


def parse_fear_greed(body: bytes, *, source: str) -> Sentiment:
    """The newest reading of an alternative.me ``/fng/`` response."""
    data = _json(body, source=source, what="the Fear & Greed index")
    readings = data.get("data") if isinstance(data, dict) else None
    if not isinstance(readings, list) or not readings or not isinstance(readings[0], dict):
        raise SourceError(f"{source}: the Fear & Greed response has no readings")
    newest = readings[0]
    try:
        value = int(str(newest.get("value", "")).strip())
    except ValueError:
        raise SourceError(
            f"{source}: the Fear & Greed value {newest.get('value')!r} is not a number"
        ) from None
    measured = _unix(newest.get("timestamp"))
    label = validation.clean_label("name", newest.get("value_classification"))
    checked = validation.check("fear_greed", value)
    if checked.reason is not None or label is None or measured is None or len(label) > 40:
        validation.REJECTIONS.record(
            "sentiment", "fear_greed", checked.reason or "malformed reading", source=source
        )
        raise SourceError(f"{source}: the Fear & Greed reading {newest!r:.200} is not usable")
    return Sentiment(value=value, label=label, measured_at=measured)


def _json(body: bytes, *, source: str, what: str) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SourceError(f"{source}: {what} is not JSON ({exc})") from None


def _unix(value: Any) -> datetime | None:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(seconds) or seconds <= 0:
        return None
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class SentimentSource:
    url: str
    fetcher: Fetcher
    name: str = "fear & greed"

    def fetch(self) -> Sentiment:
        params = {"limit": "1"} if is_remote(self.url) else None
        return parse_fear_greed(self.fetcher.read(self.url, params=params), source=self.url)
