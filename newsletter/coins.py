"""How a coin is named to a reader: its proper name and symbol from the market data.

The newest stored snapshot of a coin names it (checked like any market value, so a hostile name
never reaches a page). Before the first fetch, the coins of the default watchlist are named from a
table of their proper names; any other coin by its id made readable.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Text, cast, func, select
from sqlalchemy.orm import Session

from newsletter.models import MarketSnapshot
from newsletter.sources.validation import clean_label
from subscribers.model import Subscriber

#: The default watchlist's coins as the market data names them: id → (name, symbol).
KNOWN_COINS: dict[str, tuple[str, str]] = {
    "bitcoin": ("Bitcoin", "BTC"),
    "ethereum": ("Ethereum", "ETH"),
    "solana": ("Solana", "SOL"),
    "binancecoin": ("BNB", "BNB"),
    "ripple": ("XRP", "XRP"),
    "cardano": ("Cardano", "ADA"),
    "dogecoin": ("Dogecoin", "DOGE"),
    "polkadot": ("Polkadot", "DOT"),
    "avalanche-2": ("Avalanche", "AVAX"),
    "chainlink": ("Chainlink", "LINK"),
    "uniswap": ("Uniswap", "UNI"),
    "cosmos": ("Cosmos Hub", "ATOM"),
    "litecoin": ("Litecoin", "LTC"),
    "arbitrum": ("Arbitrum", "ARB"),
    "near": ("NEAR Protocol", "NEAR"),
    "filecoin": ("Filecoin", "FIL"),
    "sui": ("Sui", "SUI"),
}


@dataclass(frozen=True, slots=True)
class CoinLabels:
    """``labels``: coin id → "Name (SYMBOL)", in the order asked; ``complete``: all from market data."""

    labels: dict[str, str]
    complete: bool


def coin_labels(session: Session, coin_ids: Sequence[str]) -> CoinLabels:
    """The label of each coin: its newest snapshot's name and symbol, else a known or readable name."""
    newest = (
        select(MarketSnapshot.coin_id, func.max(MarketSnapshot.id).label("id"))
        .where(MarketSnapshot.coin_id.in_(list(coin_ids)))
        .group_by(MarketSnapshot.coin_id)
        .subquery()
    )
    named: dict[str, str] = {}
    for row in session.execute(
        select(MarketSnapshot.coin_id, MarketSnapshot.name, MarketSnapshot.symbol).join(
            newest, MarketSnapshot.id == newest.c.id
        )
    ):
        name, symbol = clean_label("name", row.name), clean_label("symbol", row.symbol)
        if name and symbol:
            named[row.coin_id] = f"{name} ({symbol.upper()})"
    labels = {coin: named.get(coin) or _fallback(coin) for coin in coin_ids}
    return CoinLabels(labels=labels, complete=len(named) == len(set(coin_ids)))


def _fallback(coin_id: str) -> str:
    known = KNOWN_COINS.get(coin_id)
    if known is not None:
        return f"{known[0]} ({known[1]})"
    words = [word for word in coin_id.split("-") if not word.isdigit()]
    return " ".join(words).title() or coin_id


#: How far back a fetched coin stays followable (a fetch of the top coins that failed once does not
#: take the choice away).
FOLLOWABLE_WINDOW = timedelta(days=2)


def followable_coins(session: Session, default_coins: Sequence[str]) -> list[tuple[str, str]]:
    """``(id, label)`` of every coin a reader may follow: the newsletter's own coins, then every coin
    the market source returned lately (the top coins by market cap), by rank."""
    newest = session.scalar(select(func.max(MarketSnapshot.fetched_at)))
    ranks: dict[str, int | None] = {}
    if newest is not None:
        for coin_id, rank in session.execute(
            select(MarketSnapshot.coin_id, func.min(MarketSnapshot.market_cap_rank))
            .where(MarketSnapshot.fetched_at >= newest - FOLLOWABLE_WINDOW)
            .group_by(MarketSnapshot.coin_id)
        ):
            ranks[coin_id] = rank
    others = sorted(
        (coin for coin in ranks if coin not in set(default_coins)),
        key=lambda coin: (ranks[coin] is None, ranks[coin] or 0, coin),
    )
    ids = [*default_coins, *others]
    labels = coin_labels(session, ids).labels
    return [(coin, labels[coin]) for coin in ids]


def followed_coins(session: Session) -> set[str]:
    """Every coin some subscriber follows (their watchlists), for the market fetch."""
    coins: set[str] = set()
    for (watchlist,) in session.execute(
        # JSON has no equality on PostgreSQL: take distinct lists as text, read them back.
        select(cast(Subscriber.watchlist, Text)).where(Subscriber.watchlist.is_not(None)).distinct()
    ):
        try:
            chosen = json.loads(watchlist) if watchlist else None
        except ValueError:
            continue
        if isinstance(chosen, list):
            coins.update(coin for coin in chosen if isinstance(coin, str))
    return coins
