"""Golden files: the edition rendered from fixed inputs, reviewed as diffs.

Regenerate after an intended change with ``make golden`` (``pytest tests/test_golden.py
--update-golden``) and review the diff of ``tests/golden/``.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from newsletter.digest import Digest, Mood, Sponsor, Story, Totals, build_market
from newsletter.models import MarketSnapshot
from newsletter.personal import Links
from newsletter.render import EditionContext, RenderedEdition, Renderer
from newsletter.resources import templates_dir

GOLDEN = Path(__file__).resolve().parent / "golden"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "data"
CLOCK = datetime(2026, 11, 24, 6, 30, tzinfo=UTC)


def snapshots(name: str) -> list[MarketSnapshot]:
    raw = json.loads((EXAMPLES / "coingecko" / "coins" / name).read_text(encoding="utf-8"))
    return [
        MarketSnapshot(
            coin_id=coin["id"],
            symbol=coin["symbol"].upper(),
            name=coin["name"],
            vs_currency="usd",
            price=coin["current_price"],
            market_cap_rank=coin["market_cap_rank"],
            change_24h=coin["price_change_percentage_24h_in_currency"],
            change_7d=coin["price_change_percentage_7d_in_currency"],
            sparkline_7d=coin["sparkline_in_7d"]["price"],
            source_updated_at=datetime(2026, 11, 24, 6, 0, tzinfo=UTC),
        )
        for coin in raw
    ]


def fixed_digest(*, with_market: bool = True) -> Digest:
    market = build_market(
        snapshots("markets.json"),
        now=CLOCK,
        max_age=timedelta(hours=2),
        fetched_at=CLOCK,
        movers=snapshots("markets_top100.json"),
        totals=Totals(
            market_cap=2_376_444_725_168.18,
            market_cap_change_24h=0.3896,
            btc_dominance=54.118,
            currency="usd",
        ),
        mood=Mood(value=38, label="Fear", measured_at=datetime(2026, 11, 24, tzinfo=UTC)),
    )
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
    if not with_market:
        return Digest(edition_date=date(2026, 11, 24), stories=(), market=None)
    sponsor = Sponsor(
        text="Reach 100K+ crypto readers: newsletter placements, banners & sponsored posts.",
        url="https://ads.example.com/newsletter?from=digest",
    )
    return Digest(edition_date=date(2026, 11, 24), stories=stories, market=market, sponsor=sponsor)


def render(*, with_market: bool = True) -> RenderedEdition:
    context = EditionContext(
        newsletter_name="Daily Crypto Insights",
        links=Links("https://crypto.example.com"),
        postal_address="1 Example Street, 10115 Berlin, Germany",
        unsubscribe_address="unsubscribe@example.com",
        timezone="Europe/Berlin",
    )
    return Renderer([templates_dir()]).render_edition(
        fixed_digest(with_market=with_market), context=context
    )


@pytest.mark.parametrize(
    ("name", "attribute", "with_market"),
    [
        ("issue.html", "html", True),
        ("issue.txt", "text", True),
        ("empty.html", "html", False),
        ("empty.txt", "text", False),
    ],
)
def test_rendered_edition_matches_golden_file(
    name: str, attribute: str, with_market: bool, request: pytest.FixtureRequest
) -> None:
    produced = getattr(render(with_market=with_market), attribute)
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


def test_an_edition_without_data_says_so() -> None:
    rendered = render(with_market=False)
    assert "Market data is unavailable for this edition." in rendered.html
    assert "Market data is unavailable for this edition." in rendered.text
    assert "No new stories since the last edition." in rendered.text
    assert rendered.subject == "Daily Crypto Insights · 0 stories · Tue 24 Nov"
