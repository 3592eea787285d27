"""Numbers a reader can believe: market values validated, stale prices said so, the story window kept.

Each test is named after a finding of the hostile-input run (issue 14).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from newsletter.config import Settings
from newsletter.db import Database
from newsletter.digest import Digest, latest_market
from newsletter.editions import compose_digest, edition_context
from newsletter.errors import SourceError
from newsletter.formatting import sparkline
from newsletter.ingest import store_items, store_quotes, store_totals
from newsletter.models import MarketSnapshot
from newsletter.movers import is_mirror
from newsletter.render import Renderer
from newsletter.resources import templates_dir
from newsletter.sources.feeds import parse_feed
from newsletter.sources.market import parse_global, parse_markets
from newsletter.sources.validation import rejection_counts
from tests.conftest import EXAMPLES

NOW = datetime(2026, 11, 24, 6, 30, tzinfo=UTC)
COINGECKO = EXAMPLES / "data" / "coingecko"
MARKETS = COINGECKO / "coins" / "markets.json"
TOP = COINGECKO / "coins" / "markets_top100.json"


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = Database.from_url(database_url)
    yield db
    db.dispose()


def recorded(path: Path = MARKETS) -> list[dict[str, Any]]:
    coins: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    return coins


def body(coins: Any) -> bytes:
    return json.dumps(coins).encode()


# nonsense never printed


def test_a_1e308_price_or_market_cap_is_dropped_not_printed() -> None:
    coins = recorded()[:4]
    coins[0]["current_price"] = 1e308
    coins[1]["market_cap"] = 1e308
    coins[2]["price_change_percentage_24h_in_currency"] = -250.0
    coins[3]["price_change_percentage_7d_in_currency"] = 1e308
    before = sum(rejection_counts().values())
    quotes = {quote.coin_id: quote for quote in parse_markets(body(coins), source="test")}
    assert "bitcoin" not in quotes  # no believable price: the coin is left out
    assert quotes["ethereum"].market_cap is None
    assert quotes["ethereum"].price == coins[1]["current_price"]
    assert quotes["solana"].change_24h is None
    assert quotes["binancecoin"].change_7d is None
    assert sum(rejection_counts().values()) - before == 4


def test_a_control_character_in_a_symbol_or_name_drops_the_coin() -> None:
    coins = recorded()[:8]
    coins[0]["symbol"] = "btc\r\nBcc: victim@example.com"
    coins[1]["name"] = "Ether\x00eum"
    coins[2]["symbol"] = "S" * 200
    quotes = parse_markets(body(coins), source="test")
    assert [quote.coin_id for quote in quotes][:2] == ["binancecoin", "ripple"]
    assert len(quotes) == 5


def test_a_response_whose_values_mostly_fail_is_unavailable() -> None:
    coins = recorded()[:6]
    for coin in coins[:4]:
        coin["current_price"] = float("nan")
    with pytest.raises(SourceError, match="most of its values"):
        parse_markets(json.dumps(coins).encode(), source="https://api.example/markets")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("total_market_cap", {"usd": -2.4e12}),
        ("total_market_cap", {"usd": 1e308}),
        ("market_cap_percentage", {"btc": -20.0, "eth": 8.7}),
        ("market_cap_percentage", {"btc": 1e308, "eth": 8.7}),
        ("market_cap_change_percentage_24h_usd", -250.0),
    ],
)
def test_nonsense_totals_and_dominance_become_na(field: str, value: Any) -> None:
    data = json.loads((COINGECKO / "global.json").read_text(encoding="utf-8"))
    data["data"][field] = value
    totals = parse_global(json.dumps(data).encode(), vs_currency="usd", source="test")
    if field == "total_market_cap":
        assert totals.total_market_cap is None
        assert totals.btc_dominance is not None
    elif field == "market_cap_percentage":
        assert totals.btc_dominance is None
        assert totals.eth_dominance == 8.7
    else:
        assert totals.market_cap_change_24h is None


def test_totals_that_mostly_fail_are_unavailable() -> None:
    data = {
        "data": {
            "total_market_cap": {"usd": -1},
            "total_volume": {"usd": "lots"},
            "market_cap_percentage": {"btc": 250, "eth": -3},
            "market_cap_change_percentage_24h_usd": 1e308,
            "updated_at": 1795499963,
        }
    }
    with pytest.raises(SourceError, match="most of its values"):
        parse_global(json.dumps(data).encode(), vs_currency="usd", source="test")


def test_an_extreme_sparkline_does_not_crash() -> None:
    assert sparkline([1e308, -1e308, 1.0, 2.0]) != ""
    assert sparkline([float("inf"), 1.0, 2.0]) == "▁█"


def test_stored_nonsense_is_never_printed(database: Database, make_settings: Any) -> None:
    """Rows stored before validation existed: the edition still shows n/a, never 300 digits."""
    with database.transaction() as session:
        session.add(
            MarketSnapshot(
                coin_id="bitcoin",
                symbol="BTC",
                name="Bitcoin",
                vs_currency="usd",
                price=1e308,
                market_cap=1e308,
                change_24h=-250.0,
                change_7d=3.0,
                sparkline_7d=[1e308, -1e308, 1.0, 2.0],
                fetched_at=NOW,
            )
        )
        session.add(
            MarketSnapshot(
                coin_id="ethereum",
                symbol="ETH",
                name="Ethereum",
                vs_currency="usd",
                price=3000.0,
                change_24h=1.0,
                fetched_at=NOW,
            )
        )
    with database.transaction(readonly=True) as session:
        market = latest_market(
            session, coins=["bitcoin", "ethereum"], now=NOW, max_age=timedelta(hours=2)
        )
    assert market is not None
    btc = market.coins[0]
    assert (btc.price_text, btc.change_24h_text, btc.change_7d_text) == ("n/a", "n/a", "+3.0%")
    digest = Digest(edition_date=NOW.date(), stories=(), market=market)
    rendered = Renderer([templates_dir()]).render_edition(
        digest, context=edition_context(make_settings())
    )
    assert "e+308" not in rendered.html and "0" * 30 not in rendered.html
    assert "-250" not in rendered.text
    assert len(rendered.subject) < 80
    assert rendered.subject.startswith("Daily Crypto Insights") or "ETH" in rendered.subject


# plausibility against the previous reading


def snapshot(coin: str, price: float, *, at: datetime, change: float = 1.0) -> MarketSnapshot:
    return MarketSnapshot(
        coin_id=coin,
        symbol=coin[:3].upper(),
        name=coin.title(),
        vs_currency="usd",
        price=price,
        change_24h=change,
        fetched_at=at,
        source_updated_at=at,
    )


def test_a_price_jump_is_held_for_a_second_reading(database: Database) -> None:
    first, second, third = NOW - timedelta(hours=2), NOW - timedelta(hours=1), NOW
    with database.transaction() as session:
        session.add_all(
            [
                snapshot("bitcoin", 64_000.0, at=first),
                snapshot("ethereum", 3_000.0, at=first),
                snapshot("bitcoin", 640_000.0, at=second, change=900.0),  # tenfold in an hour
                snapshot("ethereum", 3_030.0, at=second),
            ]
        )

    def picture(at: datetime) -> tuple[str, ...]:
        with database.transaction(readonly=True) as session:
            market = latest_market(
                session,
                coins=["bitcoin", "ethereum"],
                now=at,
                max_age=timedelta(hours=2),
                jump_factor=3.0,
            )
        assert market is not None
        return tuple(coin.price_text for coin in market.coins)

    assert picture(second) == ("n/a", "$3,030.00")  # held, not published
    with database.transaction() as session:
        session.add_all(
            [
                snapshot("bitcoin", 641_000.0, at=third, change=901.0),  # the second reading agrees
                snapshot("ethereum", 3_040.0, at=third),
            ]
        )
    assert picture(third) == ("$641,000.00", "$3,040.00")


# staleness told everywhere


def stale_edition(database: Database, settings: Settings) -> Any:
    recorded_at = datetime(2026, 11, 24, 5, 59, tzinfo=UTC)
    coins = recorded()
    with database.transaction() as session:
        store_quotes(
            session,
            parse_markets(body(coins), source="test"),
            vs_currency="usd",
            fetched_at=recorded_at + timedelta(minutes=1),
        )
    build_at = datetime(2026, 12, 1, 6, 30, tzinfo=UTC)
    with database.transaction(readonly=True) as session:
        digest, _ = compose_digest(session, settings, edition_date=build_at.date(), now=build_at)
    assert digest.market is not None and digest.market.stale
    return Renderer([templates_dir()]).render_edition(digest, context=edition_context(settings))


def test_stale_prices_are_dated_in_subject_preheader_summary_text_and_archive(
    database_url: str, make_settings: Callable[..., Settings]
) -> None:
    database = Database.from_url(database_url)
    try:
        rendered = stale_edition(database, make_settings(database_url=database_url))
    finally:
        database.dispose()
    # the subject leaves the stale price out
    assert "$63,957" not in rendered.subject and "+0.6%" not in rendered.subject
    # the preheader (also the archive's line) and the summary say when the prices are from
    assert "24 Nov" in rendered.preheader and "05:59" in rendered.preheader
    assert not rendered.preheader.startswith("Bitcoin rose")
    summary = rendered.html.split('class="summary"', 1)[1].split("</p>", 1)[0]
    assert "24 Nov" in summary and "05:59" in summary
    assert "24 Nov" in rendered.text.split("\n\n", 2)[1]
    assert "These prices are from 24 Nov 2026" in rendered.text


def test_a_future_stamped_snapshot_is_not_trusted(database: Database) -> None:
    coins = recorded()[:2]
    for coin in coins:
        coin["last_updated"] = "2026-11-24T20:33:00Z"  # later than the fetch
    with database.transaction() as session:
        store_quotes(
            session, parse_markets(body(coins), source="test"), vs_currency="usd", fetched_at=NOW
        )
        store_totals(
            session,
            parse_global((COINGECKO / "global.json").read_bytes(), vs_currency="usd", source="t"),
            vs_currency="usd",
            fetched_at=NOW,
        )
    with database.transaction(readonly=True) as session:
        market = latest_market(
            session,
            coins=["bitcoin", "ethereum"],
            now=NOW + timedelta(hours=3),
            max_age=timedelta(hours=2),
        )
    assert market is not None
    assert market.as_of == NOW
    assert market.stale


# movers and names


MIRRORS = {
    "tether": "usdt",
    "usd-coin": "usdc",
    "staked-ether": "steth",
    "wrapped-bitcoin": "wbtc",
    "usds": "usds",
    "ethena-usde": "usde",
    "wrapped-steth": "wsteth",
    "coinbase-wrapped-btc": "cbbtc",
    "dai": "dai",
    "weth": "weth",
    "ethena-staked-usde": "susde",
    "usd1-wlfi": "usd1",
    "paypal-usd": "pyusd",
    "wrapped-eeth": "weeth",
    "tether-gold": "xaut",
    "pax-gold": "paxg",
    "jito-staked-sol": "jitosol",
    "ripple-usd": "rlusd",
    "first-digital-usd": "fdusd",
}


def test_movers_leave_out_stablecoins_and_wrapped_staked_or_bridged_derivatives() -> None:
    top = recorded(TOP)
    left_out = {coin["id"] for coin in top if is_mirror(coin["id"], coin["symbol"], coin["name"])}
    assert left_out == set(MIRRORS)
    # look-alikes that are coins in their own right stay in
    for coin_id, symbol, name in [
        ("whitebit", "wbt", "WhiteBIT Coin"),
        ("bitcoin-cash", "bch", "Bitcoin Cash"),
        ("lido-dao", "ldo", "Lido DAO"),
        ("ethena", "ena", "Ethena"),
        ("sky", "sky", "Sky"),
    ]:
        assert not is_mirror(coin_id, symbol, name)
    assert is_mirror("bridged-usdc-polygon-pos-bridge", "usdc.e", "Bridged USDC (Polygon PoS)")
    assert is_mirror("rocket-pool-eth", "reth", "Rocket Pool ETH")
    assert is_mirror("euro-coin", "eurc", "EURC")


def test_the_days_movers_are_coins_not_mirrors(database: Database) -> None:
    top = recorded(TOP)
    for coin in top:
        if coin["id"] in ("tether", "wrapped-bitcoin", "staked-ether"):
            coin["price_change_percentage_24h_in_currency"] = 40.0
        if coin["id"] == "usd-coin":
            coin["price_change_percentage_24h_in_currency"] = -30.0
    with database.transaction() as session:
        store_quotes(
            session, parse_markets(body(top), source="t"), vs_currency="usd", fetched_at=NOW
        )
        store_quotes(
            session, parse_markets(body(recorded()), source="t"), vs_currency="usd", fetched_at=NOW
        )
    with database.transaction(readonly=True) as session:
        market = latest_market(
            session, coins=["bitcoin", "ethereum"], now=NOW, max_age=timedelta(hours=2)
        )
    assert market is not None and market.gainers and market.losers
    shown = {coin.coin_id for coin in market.gainers + market.losers}
    assert not shown & set(MIRRORS)


# the story window


def rss(*items: tuple[str, str | None]) -> bytes:
    entries = "".join(
        f"<item><title>{title}</title><link>https://news.example.com/{number}</link>"
        + (f"<pubDate>{when}</pubDate>" if when is not None else "")
        + "</item>"
        for number, (title, when) in enumerate(items)
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>{entries}</channel></rss>'.encode()


def test_the_story_window_holds_over_bad_dates(
    database: Database, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(max_article_age_hours=72, per_source_cap=10)
    feed = rss(
        ("From 1970", "Thu, 01 Jan 1970 00:00:00 +0000"),
        ("Seven days old", "Tue, 17 Nov 2026 06:00:00 +0000"),
        ("From the future", "Tue, 24 Nov 2099 05:41:00 +0000"),
        ("Undated", None),
        ("Fresh", "Tue, 24 Nov 2026 05:00:00 +0000"),
    )
    seen_first = NOW - timedelta(hours=1)
    with database.transaction() as session:
        store_items(session, parse_feed(feed, source="T", now=seen_first), first_seen_at=seen_first)
        # the feed is read again later: the undated story keeps the date it was first seen
        store_items(session, parse_feed(feed, source="T", now=NOW), first_seen_at=NOW)
    with database.transaction(readonly=True) as session:
        digest, _ = compose_digest(session, settings, edition_date=NOW.date(), now=NOW)
    dated = {story.title: story.published_at for story in digest.stories}
    assert set(dated) == {"From the future", "Undated", "Fresh"}
    assert dated["From the future"] == seen_first  # clamped to when it was seen
    assert dated["Undated"] == seen_first


def test_the_demo_window_zero_still_replays_old_stories(
    database: Database, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(max_article_age_hours=0)
    feed = rss(("Seven days old", "Tue, 17 Nov 2026 06:00:00 +0000"))
    with database.transaction() as session:
        store_items(session, parse_feed(feed, source="T", now=NOW), first_seen_at=NOW)
    with database.transaction(readonly=True) as session:
        digest, _ = compose_digest(session, settings, edition_date=date(2026, 11, 24), now=NOW)
    assert [story.title for story in digest.stories] == ["Seven days old"]
