"""How numbers read in an edition: prices by magnitude, signed percentages, Unicode sparklines."""

from __future__ import annotations

import math
from collections.abc import Sequence

CURRENCY_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥"}
SPARK_BARS = "▁▂▃▄▅▆▇█"


def format_price(value: float, currency: str = "usd", *, cents: bool = True) -> str:
    """``$63,957.00``, ``$1.12``, ``$0.1581``, ``$0.00001234``.

    At 1 and above: two decimals (none when ``cents`` is false); from 0.01 to 1: four decimals; below
    0.01: four significant digits.
    """
    if not math.isfinite(value):
        return "n/a"
    symbol = CURRENCY_SYMBOLS.get(currency.lower())
    magnitude = abs(value)
    if round(magnitude, 2) >= 1 or magnitude == 0:
        digits = f"{magnitude:,.2f}" if cents else f"{magnitude:,.0f}"
    elif round(magnitude, 4) >= 0.01:
        digits = f"{magnitude:.4f}"
    else:
        decimals = min(3 - math.floor(math.log10(magnitude)), 20)
        digits = f"{magnitude:.{decimals}f}"
    sign = "-" if value < 0 else ""
    if symbol:
        return f"{sign}{symbol}{digits}"
    return f"{sign}{digits} {currency.upper()}"


def format_change(value: float | None) -> str:
    """A signed percentage with one decimal: ``+0.6%``, ``-1.3%``, ``0.0%``; ``n/a`` when unknown."""
    if value is None or not math.isfinite(value):
        return "n/a"
    rounded = round(value, 1)
    if rounded == 0:
        return "0.0%"
    return f"{rounded:+.1f}%"


def change_arrow(value: float | None) -> str:
    """▲ for a rise, ▼ for a fall, nothing when flat or unknown (colour is never the only signal)."""
    if value is None or not math.isfinite(value) or round(value, 1) == 0:
        return ""
    return "▲" if value > 0 else "▼"


def change_direction(value: float | None) -> str:
    """``up``, ``down`` or ``flat``: a CSS class and a word for screen readers."""
    arrow = change_arrow(value)
    return {"▲": "up", "▼": "down"}.get(arrow, "flat")


def sparkline(values: Sequence[float], width: int = 24) -> str:
    """A Unicode block sparkline of ``values`` resampled to ``width`` bars; empty without data."""
    points = [value for value in values if math.isfinite(value)]
    if len(points) < 2:
        return ""
    if len(points) > width:
        step = len(points) / width
        points = [
            points[min(int(index * step + step - 1), len(points) - 1)] for index in range(width)
        ]
    low, high = min(points), max(points)
    if high == low:
        return SPARK_BARS[3] * len(points)
    # Halved so that no difference overflows, whatever the magnitudes (1e308 and -1e308).
    span = high / 2 - low / 2
    top = len(SPARK_BARS) - 1
    return "".join(
        SPARK_BARS[min(top, max(0, round((point / 2 - low / 2) / span * top)))] for point in points
    )


def format_large(value: float | None, currency: str = "usd") -> str:
    """``$2.41T``, ``$812.5B``, ``$95.2M``; n/a when unknown."""
    if value is None or not math.isfinite(value):
        return "n/a"
    symbol = CURRENCY_SYMBOLS.get(currency.lower(), "")
    for threshold, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= threshold:
            return f"{symbol}{value / threshold:,.2f}{suffix}"
    return f"{symbol}{value:,.0f}"
