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


#: The stale edition is built a week after its prices (recorded 24 Nov 06:00 UTC).
STALE_CLOCK = datetime(2026, 12, 1, 6, 30, tzinfo=UTC)


def fixed_digest(*, with_market: bool = True, stale: bool = False) -> Digest:
    market = build_market(
        snapshots("markets.json"),
        now=STALE_CLOCK if stale else CLOCK,
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
    if stale:
        return Digest(edition_date=STALE_CLOCK.date(), stories=stories, market=market)
    sponsor = Sponsor(
        text="Reach 100K+ crypto readers: newsletter placements, banners & sponsored posts.",
        url="https://ads.example.com/newsletter?from=digest",
    )
    return Digest(edition_date=date(2026, 11, 24), stories=stories, market=market, sponsor=sponsor)


def render(*, with_market: bool = True, stale: bool = False) -> RenderedEdition:
    context = EditionContext(
        newsletter_name="Daily Crypto Insights",
        links=Links("https://crypto.example.com"),
        postal_address="1 Example Street, 10115 Berlin, Germany",
        unsubscribe_address="unsubscribe@example.com",
        timezone="Europe/Berlin",
    )
    return Renderer([templates_dir()]).render_edition(
        fixed_digest(with_market=with_market, stale=stale), context=context
    )


@pytest.mark.parametrize(
    ("name", "attribute", "with_market", "stale"),
    [
        ("issue.html", "html", True, False),
        ("issue.txt", "text", True, False),
        ("empty.html", "html", False, False),
        ("empty.txt", "text", False, False),
        ("stale.html", "html", True, True),
        ("stale.txt", "text", True, True),
    ],
)
def test_rendered_edition_matches_golden_file(
    name: str, attribute: str, with_market: bool, stale: bool, request: pytest.FixtureRequest
) -> None:
    produced = getattr(render(with_market=with_market, stale=stale), attribute)
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


# Fixed content assertions on the golden files themselves: 'make golden' rewrites the files, never
# these lines, so a regeneration that loses what a reader relies on still fails here.


def golden(name: str) -> str:
    return (GOLDEN / name).read_text(encoding="utf-8")


def test_golden_edition_states_the_facts_a_reader_relies_on() -> None:
    text, html = golden("issue.txt"), golden("issue.html")
    assert text.startswith("DAILY CRYPTO INSIGHTS\nTuesday, 24 November 2026\n")
    assert "Bitcoin rose 0.6% to $63,957.00 in 24 h" in text
    assert "BTC        $63,957.00    ▲+0.6%    ▼-3.8%" in text
    assert "Total market cap: $2.38T (+0.4% in 24 h)" in text
    assert "BTC dominance: 54.1%" in text
    assert "Prices as of 07:00 Europe/Berlin." in text
    assert "Top gainers: VIRTUAL +24.8%, IP +21.4%, CFX +18.4%" in text
    for mirror in ("USDT", "USDC", "WBTC", "STETH", "DAI"):
        assert f"{mirror} " not in text.split("WHAT MOVED IN 24 H", 1)[1].split("TOP STORIES")[0]
    assert "These prices are from" not in text
    for part in (text, html):
        assert "Not financial advice." in part
        assert "__NL_UNSUBSCRIBE_URL__" in part
        assert "1 Example Street, 10115 Berlin, Germany" in part
    assert "&lt;angle brackets&gt; &amp; an ampersand" in html
    assert "<script" not in html.lower()


def test_golden_empty_edition_says_what_is_missing() -> None:
    for name in ("empty.txt", "empty.html"):
        content = golden(name)
        assert "Market data is unavailable for this edition." in content
        assert "No new stories since the last edition." in content
        assert "$" not in content


def test_golden_stale_edition_dates_its_prices_everywhere() -> None:
    """Prices from 24 Nov in the edition of 1 Dec: never stated as current."""
    rendered = render(stale=True)
    assert rendered.subject == "Daily Crypto Insights · 3 stories · Tue 1 Dec"
    assert rendered.preheader.startswith(
        "Latest prices available, from 24 Nov 2026 07:00 Europe/Berlin: Bitcoin rose 0.6%"
    )
    text, html = golden("stale.txt"), golden("stale.html")
    assert text.startswith("DAILY CRYPTO INSIGHTS\nTuesday, 1 December 2026\n\nLatest prices")
    assert "from 24 Nov 2026 07:00 Europe/Berlin: Bitcoin rose 0.6%" in " ".join(text.split())
    assert "These prices are from 24 Nov 2026 07:00 (Europe/Berlin)" in text
    assert 'class="summary"' in html
    summary = html.split('class="summary"', 1)[1].split("</p>", 1)[0]
    assert "Latest prices available, from 24 Nov 2026 07:00 Europe/Berlin" in summary
    assert "These prices are from 24 Nov 2026 07:00 (Europe/Berlin)" in html
    assert "Latest prices available, from 24 Nov 2026" in html.split('class="preheader"', 1)[1]
