"""Prices and percentages read right at every magnitude (property tests) and in known cases."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from newsletter.formatting import (
    change_arrow,
    format_change,
    format_large,
    format_price,
    sparkline,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (63957.0, "$63,957.00"),
        (1720.67, "$1,720.67"),
        (588.47, "$588.47"),
        (1.12, "$1.12"),
        (0.1581, "$0.1581"),
        (0.0821, "$0.0821"),
        (0.936, "$0.9360"),
        (0.00001234, "$0.00001234"),
        (0.999999, "$1.00"),
        (0.0, "$0.00"),
    ],
)
def test_prices_by_magnitude(value: float, expected: str) -> None:
    assert format_price(value) == expected


def test_other_currencies() -> None:
    assert format_price(1234.5, "eur") == "€1,234.50"
    assert format_price(10, "chf") == "10.00 CHF"
    assert format_price(float("nan")) == "n/a"


def parse(text: str) -> float:
    return float(re.sub(r"[^0-9.\-]", "", text))


prices = st.floats(min_value=1e-9, max_value=1e12, allow_nan=False, allow_infinity=False)


@given(prices)
def test_a_price_reads_back_as_itself(value: float) -> None:
    text = format_price(value)
    assert text.startswith("$")
    shown = parse(text)
    if round(value, 2) >= 1:
        assert re.fullmatch(r"\$\d{1,3}(,\d{3})*\.\d{2}", text)
        assert abs(shown - value) <= 0.005 + 1e-9 * value
    elif round(value, 4) >= 0.01:
        assert re.fullmatch(r"\$0\.\d{4}", text)
        assert abs(shown - value) <= 0.00005 + 1e-12
    else:
        digits = text.split(".")[1].lstrip("0")
        assert len(digits) == 4  # four significant digits for tiny prices
        assert math.isclose(shown, value, rel_tol=1e-3)


@given(st.floats(min_value=-1000, max_value=1000, allow_nan=False))
def test_a_change_has_a_sign_one_decimal_and_an_arrow_that_agree(value: float) -> None:
    text = format_change(value)
    assert re.fullmatch(r"[+-]?\d+\.\d%", text)
    shown = float(text.rstrip("%"))
    assert abs(shown - value) <= 0.05 + 1e-9
    arrow = change_arrow(value)
    if shown > 0:
        assert text.startswith("+") and arrow == "▲"
    elif shown < 0:
        assert text.startswith("-") and arrow == "▼"
    else:
        assert text == "0.0%" and arrow == ""


def test_unknown_change() -> None:
    assert format_change(None) == "n/a"
    assert change_arrow(None) == ""


@given(
    st.lists(st.floats(min_value=1e-6, max_value=1e6, allow_nan=False), min_size=2, max_size=500)
)
def test_sparklines_have_bounded_width_and_span_the_range(points: list[float]) -> None:
    line = sparkline(points, width=24)
    assert 2 <= len(line) <= 24
    assert set(line) <= set("▁▂▃▄▅▆▇█")
    if max(points) > min(points) and len(points) <= 24:
        assert "▁" in line and "█" in line


def test_large_numbers() -> None:
    assert format_large(2_376_444_725_168.18) == "$2.38T"
    assert format_large(812_500_000_000) == "$812.50B"
    assert format_large(None) == "n/a"
