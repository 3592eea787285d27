"""The lines an edition leads with: the subject, the summary sentence, the preheader.

Stale prices are never stated as current: when the newest usable snapshot is older than the freshness
limit, the subject leaves the price out, and the summary (which is also the preheader and the
archive's line) starts with the time the prices are from.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from newsletter.formatting import format_change, format_price


class Quoted(Protocol):
    @property
    def symbol(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def price(self) -> float | None: ...
    @property
    def currency(self) -> str: ...
    @property
    def change_24h(self) -> float | None: ...
    @property
    def price_text(self) -> str: ...
    @property
    def change_24h_text(self) -> str: ...


def subject_line(
    newsletter_name: str,
    *,
    edition_date: date,
    stories: int,
    lead: Quoted | None,
    stale: bool,
) -> str:
    """``BTC $63,957 (+0.6%) · 8 stories · Tue 24 Nov``; without a price when it is stale or held."""
    day = f"{edition_date:%a} {edition_date.day} {edition_date:%b}"
    count = f"{stories} {'story' if stories == 1 else 'stories'}"
    if lead is None or lead.price is None or stale:
        return f"{newsletter_name} · {count} · {day}"
    price = format_price(lead.price, lead.currency, cents=lead.price < 100)
    return f"{lead.symbol} {price} ({format_change(lead.change_24h)}) · {count} · {day}"


def stale_prefix(as_of: datetime, timezone: str) -> str:
    """``Latest prices available, from 24 Nov 2026 05:59 UTC: ``."""
    local = as_of.astimezone(ZoneInfo(timezone))
    return f"Latest prices available, from {local:%d %b %Y %H:%M} {timezone}: "


def summary_line(coins: Sequence[Quoted]) -> str:
    """One sentence on the day, from the numbers alone.

    ``Bitcoin rose 0.6% to $63,957.00 in 24 h; 10 of 17 tracked coins are up, SUI leading (+2.4%)
    and SOL trailing (-1.3%).``
    """
    known = [coin for coin in coins if coin.change_24h is not None and coin.price is not None]
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
