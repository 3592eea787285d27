"""Golden files: the edition rendered from fixed inputs, reviewed as diffs.

Regenerate after an intended change with ``make golden`` (``pytest tests/test_golden.py
--update-golden``) and review the diff of ``tests/golden/``.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from newsletter.digest import Digest, Story, build_market
from newsletter.models import MarketSnapshot
from newsletter.personal import Links
from newsletter.render import EditionContext, RenderedEdition, Renderer
from newsletter.resources import templates_dir

GOLDEN = Path(__file__).resolve().parent / "golden"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "data"
CLOCK = datetime(2026, 11, 24, 6, 30, tzinfo=UTC)


def fixed_digest() -> Digest:
    raw = json.loads(
        (EXAMPLES / "coingecko" / "coins" / "markets.json").read_text(encoding="utf-8")
    )
    snapshots = [
        MarketSnapshot(
            coin_id=coin["id"],
            symbol=coin["symbol"].upper(),
            name=coin["name"],
            vs_currency="usd",
            price=coin["current_price"],
            change_24h=coin["price_change_percentage_24h_in_currency"],
            change_7d=coin["price_change_percentage_7d_in_currency"],
            sparkline_7d=coin["sparkline_in_7d"]["price"],
            source_updated_at=datetime(2026, 11, 24, 6, 0, tzinfo=UTC),
        )
        for coin in raw
    ]
    market = build_market(snapshots, now=CLOCK, max_age=timedelta(hours=2), fetched_at=CLOCK)
    stories = tuple(
        Story(
            title=f"Story {number}: Bitcoin & Ether — what moved in Zürich",
            url=f"https://news.example.com/2026/11/24/story-{number}",
            source=("Chainwire", "Ledger Daily", "DeFi Desk")[number % 3],
            published_at=CLOCK - timedelta(hours=number),
            teaser="A short teaser with <angle brackets> & an ampersand, kept as text. " * 2,
        )
        for number in range(1, 4)
    )
    return Digest(edition_date=date(2026, 11, 24), stories=stories, market=market)


def render() -> RenderedEdition:
    context = EditionContext(
        newsletter_name="Daily Crypto Insights",
        links=Links("https://crypto.example.com"),
        postal_address="1 Example Street, 10115 Berlin, Germany",
        unsubscribe_address="unsubscribe@example.com",
        timezone="Europe/Berlin",
    )
    return Renderer([templates_dir()]).render_edition(fixed_digest(), context=context)


@pytest.mark.parametrize(("name", "attribute"), [("issue.html", "html"), ("issue.txt", "text")])
def test_rendered_edition_matches_golden_file(
    name: str, attribute: str, request: pytest.FixtureRequest
) -> None:
    produced = getattr(render(), attribute)
    golden = GOLDEN / name
    if request.config.getoption("--update-golden"):
        golden.write_text(produced, encoding="utf-8")
    assert golden.exists(), "no golden file yet: run 'make golden' and review it"
    assert produced == golden.read_text(encoding="utf-8"), (
        f"{name} changed; if intended, run 'make golden' and review the diff"
    )


def test_subject_and_preheader() -> None:
    rendered = render()
    assert rendered.subject == "BTC $63,957 (+0.6%) · 3 stories · Tue 24 Nov"
    assert rendered.preheader.startswith("Bitcoin rose 0.6% to $63,957.00 in 24 h")
