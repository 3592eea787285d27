"""Market data from a CoinGecko-compatible ``/coins/markets`` endpoint, or its recorded response.

A local ``base_url`` is a directory laid out like the API: ``coins/markets.json`` holds a recorded
``/coins/markets?...&sparkline=true&price_change_percentage=24h,7d`` response.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from newsletter.errors import SourceError
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
class MarketSource:
    base_url: str
    coins: Sequence[str]
    vs_currency: str
    fetcher: Fetcher
    api_key: str | None = None
    name: str = "market data"

    def fetch(self) -> list[CoinQuote]:
        if is_remote(self.base_url):
            headers = {"x-cg-demo-api-key": self.api_key} if self.api_key else None
            body = self.fetcher.read(
                f"{self.base_url.rstrip('/')}/coins/markets",
                params={
                    "vs_currency": self.vs_currency,
                    "ids": ",".join(self.coins),
                    "order": "market_cap_desc",
                    "per_page": "250",
                    "page": "1",
                    "sparkline": "true",
                    "price_change_percentage": "24h,7d",
                },
                headers=headers,
            )
        else:
            body = self.fetcher.read(str(Path(self.base_url) / "coins" / "markets.json"))
        quotes = parse_markets(body, source=self.base_url)
        wanted = {coin: position for position, coin in enumerate(self.coins)}
        chosen = [quote for quote in quotes if quote.coin_id in wanted]
        missing = set(wanted) - {quote.coin_id for quote in chosen}
        if missing:
            log.warning("market data has no price for: %s", ", ".join(sorted(missing)))
        return sorted(chosen, key=lambda quote: wanted[quote.coin_id])


def parse_markets(body: bytes, *, source: str) -> list[CoinQuote]:
    """Quotes from a ``/coins/markets`` response; coins with an unusable price are skipped."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SourceError(f"{source}: market data is not JSON ({exc})") from None
    if isinstance(data, dict) and "status" in data:
        raise SourceError(f"{source}: market data API refused the request: {data['status']}")
    if not isinstance(data, list):
        raise SourceError(f"{source}: market data is not a list of coins")
    quotes = []
    for raw in data:
        quote = _quote(raw)
        if quote is None:
            log.warning("%s: skipped a coin without a usable price: %.200r", source, raw)
            continue
        quotes.append(quote)
    return quotes


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _quote(raw: Any) -> CoinQuote | None:
    if not isinstance(raw, dict):
        return None
    coin_id, symbol, name = raw.get("id"), raw.get("symbol"), raw.get("name")
    price = _number(raw.get("current_price"))
    if not (isinstance(coin_id, str) and isinstance(symbol, str) and isinstance(name, str)):
        return None
    if price is None or price < 0:
        return None
    series = raw.get("sparkline_in_7d")
    points = series.get("price") if isinstance(series, dict) else None
    sparkline = tuple(
        number
        for number in (_number(value) for value in (points if isinstance(points, list) else ()))
        if number is not None
    )
    rank = raw.get("market_cap_rank")
    image = raw.get("image")
    return CoinQuote(
        coin_id=coin_id[:100],
        symbol=symbol.upper()[:30],
        name=name[:100],
        price=price,
        market_cap=_number(raw.get("market_cap")),
        market_cap_rank=rank if isinstance(rank, int) and not isinstance(rank, bool) else None,
        change_24h=_number(
            raw.get(
                "price_change_percentage_24h_in_currency", raw.get("price_change_percentage_24h")
            )
        ),
        change_7d=_number(raw.get("price_change_percentage_7d_in_currency")),
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
