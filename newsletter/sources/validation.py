"""What a market value must look like before an edition may print it: the rules in one table.

Every number from a market-data source passes ``check`` with the rule of its field: the right type (a
JSON number, never a string or a boolean), finite, and inside a plausible range. Symbols and names
pass ``clean_label``; timestamps pass ``not_future``; a price that jumped too far from the previous
reading passes ``plausible_jump`` only once a second reading agrees with it. A value that fails is
dropped (the edition shows "n/a"), its reason is logged and counted (``rejection_counts``, served
in ``/metrics``), and a source whose values mostly fail counts as unavailable (``mostly_failed``).
"""

from __future__ import annotations

import logging
import math
import threading
import unicodedata
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Rule:
    """A plausible range: ``low`` (excluded when ``low_open``) up to ``high`` (excluded)."""

    low: float
    high: float
    low_open: bool = False
    integer: bool = False

    def describe(self) -> str:
        opening = "(" if self.low_open else "["
        return f"{opening}{self.low:g}, {self.high:g})"


#: Per field: the plausible range. Prices and caps are in the quoted currency; the ceilings are far
#: above any real coin in any mainstream currency, far below the nonsense a broken API returns.
RULES: dict[str, Rule] = {
    "price": Rule(0, 1e10, low_open=True),
    "sparkline": Rule(0, 1e10, low_open=True),
    "market_cap": Rule(0, 1e17),
    "change_24h": Rule(-100, 100_000),
    "change_7d": Rule(-100, 100_000),
    "market_cap_rank": Rule(1, 100_000, integer=True),
    "total_market_cap": Rule(0, 1e18, low_open=True),
    "total_volume": Rule(0, 1e18),
    "market_cap_change_24h": Rule(-100, 100_000),
    "btc_dominance": Rule(0, 100.000001),
    "eth_dominance": Rule(0, 100.000001),
    "fear_greed": Rule(0, 100.000001, integer=True),
}

#: Longest symbol and name an edition prints.
SYMBOL_MAX = 20
NAME_MAX = 80
#: How far ahead of the fetch a source's clock may be before its timestamp is not trusted.
CLOCK_SKEW = timedelta(minutes=5)
#: More than this share of failing values makes a whole response unavailable.
FAILING_SHARE = 0.5


@dataclass(frozen=True, slots=True)
class Checked:
    value: float | None
    reason: str | None = None


def check(field: str, value: Any) -> Checked:
    """``value`` if it passes the rule of ``field``; otherwise None and why (missing is no failure)."""
    if value is None:
        return Checked(None)
    rule = RULES[field]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return Checked(None, f"{type(value).__name__} is not a number")
    number = float(value)
    if not math.isfinite(number):
        return Checked(None, "not a finite number")
    if rule.integer and not number.is_integer():
        return Checked(None, "not a whole number")
    below = number <= rule.low if rule.low_open else number < rule.low
    if below or number >= rule.high:
        return Checked(None, f"{number:.6g} outside {rule.describe()}")
    return Checked(number)


def clean_label(kind: str, value: Any) -> str | None:
    """A symbol or name to print, or None: text, no control characters, within the length cap."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    limit = SYMBOL_MAX if kind == "symbol" else NAME_MAX
    if not text or len(text) > limit:
        return None
    if any(unicodedata.category(char).startswith("C") for char in text):
        return None
    if kind == "symbol" and any(char.isspace() for char in text):
        return None
    return text


def not_future(stamp: datetime | None, *, fetched_at: datetime) -> datetime | None:
    """``stamp`` unless it is ahead of ``fetched_at`` by more than the skew; then ``fetched_at``."""
    if stamp is None or stamp <= fetched_at + CLOCK_SKEW:
        return stamp
    return fetched_at


def plausible_jump(price: float, previous: float | None, *, factor: float) -> bool:
    """Whether ``price`` is within ``factor`` of the previous reading (any price without one is)."""
    if previous is None or previous <= 0 or factor <= 1:
        return True
    return 1 / factor <= price / previous <= factor


def mostly_failed(*, checked: int, failed: int) -> bool:
    return checked > 0 and failed / checked > FAILING_SHARE


class Rejections:
    """Values refused, by part of the market data, field and reason; logged, counted for ``/metrics``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str, str]] = Counter()

    def record(self, part: str, field: str, reason: str, *, source: str, what: str = "") -> None:
        """``part``: coins, totals or sentiment; ``reason``: a sentence for the log."""
        log.warning("%s: %s%s dropped: %s", source, f"{what} " if what else "", field, reason)
        with self._lock:
            self._counts[(part, field, _kind(reason))] += 1

    def counts(self) -> dict[tuple[str, str, str], int]:
        with self._lock:
            return dict(self._counts)


def _kind(reason: str) -> str:
    for marker, kind in (
        ("outside", "out of range"),
        ("not a number", "not a number"),
        ("finite", "not finite"),
        ("whole", "not a whole number"),
        ("held", "held for a second reading"),
        ("future", "in the future"),
        ("missing", "missing"),
    ):
        if marker in reason:
            return kind
    return "malformed"


#: The tally of this process.
REJECTIONS = Rejections()


def rejection_counts() -> dict[tuple[str, str, str], int]:
    """(part, field, reason) → how many values this process refused."""
    return REJECTIONS.counts()
