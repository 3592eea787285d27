"""What goes into an edition: story selection and the computed market picture, on both databases."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest

from newsletter.db import Database
from newsletter.digest import CoinRow, latest_market, select_articles, summary_line, window_start
from newsletter.ingest import store_items, store_quotes, store_sentiment, store_totals
from newsletter.models import Issue, IssueArticle, IssueStatus
from newsletter.sources.feeds import FeedItem
from newsletter.sources.market import CoinQuote, MarketTotals, Sentiment

NOW = datetime(2026, 11, 24, 6, 30, tzinfo=UTC)


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = Database.from_url(database_url)
    yield db
    db.dispose()


def item(source: str, number: int, *, hours_ago: float, title: str | None = None) -> FeedItem:
    return FeedItem(
        source=source,
        guid=f"{source}-{number}",
        url=f"https://{source.lower().replace(' ', '')}.example.com/{number}",
        title=title or f"{source} story {number}",
        summary="",
        published_at=NOW - timedelta(hours=hours_ago),
    )


def titles(database: Database, **options: object) -> list[str]:
    with database.transaction(readonly=True) as session:
        chosen = select_articles(session, now=NOW, **options)  # type: ignore[arg-type]
        return [article.title for article in chosen]


def test_sources_are_interleaved_and_capped(database: Database) -> None:
    with database.transaction() as session:
        store_items(
            session,
            [item("Busy", number, hours_ago=number * 0.1) for number in range(10)]
            + [item("Quiet", 1, hours_ago=5), item("Slow", 1, hours_ago=9)],
            first_seen_at=NOW,
        )
    chosen = titles(database, count=6, since=None, per_source_cap=3)
    assert chosen == [
        "Busy story 0",
        "Quiet story 1",
        "Slow story 1",
        "Busy story 1",
        "Busy story 2",
    ]  # every source once before any twice; Busy stops at its cap of 3


def test_a_feeds_own_cap_wins(database: Database) -> None:
    with database.transaction() as session:
        store_items(session, [item("Busy", n, hours_ago=n) for n in range(5)], first_seen_at=NOW)
    assert (
        len(titles(database, count=8, since=None, per_source_cap=3, source_caps={"Busy": 1})) == 1
    )


def test_the_same_story_from_two_feeds_counts_once(database: Database) -> None:
    with database.transaction() as session:
        store_items(
            session,
            [
                item("A", 1, hours_ago=1, title="Bitcoin ETFs log inflows!"),
                item("B", 1, hours_ago=2, title="bitcoin ETFs log   inflows"),
            ],
            first_seen_at=NOW,
        )
    assert titles(database, count=8, since=None, per_source_cap=3) == ["Bitcoin ETFs log inflows!"]


def test_only_news_since_the_window_and_never_twice(database: Database) -> None:
    with database.transaction() as session:
        store_items(
            session,
            [item("A", 1, hours_ago=2), item("A", 2, hours_ago=30), item("A", 3, hours_ago=3)],
            first_seen_at=NOW - timedelta(hours=40),
        )
        used = session.query(Issue).count()
        assert used == 0
        issue = Issue(
            edition_date=date(2026, 11, 23),
            status=IssueStatus.SENT,
            subject="s",
            built_at=NOW - timedelta(days=1),
        )
        session.add(issue)
        session.flush()
        third = select_articles(session, count=8, now=NOW, since=None, per_source_cap=9)[-1]
        session.add(IssueArticle(issue_id=issue.id, article_id=third.id, position=0))
    with database.transaction(readonly=True) as session:
        start = window_start(
            session, edition_date=date(2026, 11, 24), now=NOW, max_age=timedelta(hours=72)
        )
        assert start == NOW - timedelta(days=1)  # the previous edition's build
        chosen = select_articles(session, count=8, now=NOW, since=start, per_source_cap=9)
    assert [article.title for article in chosen] == ["A story 1", "A story 3"]


def test_window_without_a_previous_edition_is_24_hours(database: Database) -> None:
    with database.transaction(readonly=True) as session:
        assert window_start(
            session, edition_date=date(2026, 11, 24), now=NOW, max_age=timedelta(hours=72)
        ) == (NOW - timedelta(hours=24))
        assert window_start(session, edition_date=date(2026, 11, 24), now=NOW, max_age=None) is None


def test_a_story_first_seen_late_still_makes_it(database: Database) -> None:
    with database.transaction() as session:
        store_items(
            session, [item("Laggy", 1, hours_ago=30)], first_seen_at=NOW - timedelta(hours=1)
        )
    assert titles(database, count=8, since=NOW - timedelta(hours=24), per_source_cap=3) == [
        "Laggy story 1"
    ]


def quote(coin: str, change: float, rank: int, price: float = 10.0) -> CoinQuote:
    return CoinQuote(
        coin_id=coin,
        symbol=coin[:4].upper(),
        name=coin.title(),
        price=price,
        market_cap=None,
        market_cap_rank=rank,
        change_24h=change,
        change_7d=None,
        sparkline_7d=(1.0, 2.0, 3.0),
        image_url=None,
        source_updated_at=NOW - timedelta(minutes=5),
    )


def test_market_picture_with_movers_totals_and_mood(database: Database) -> None:
    with database.transaction() as session:
        store_quotes(
            session,
            [quote(f"coin{rank}", change=rank - 50.0, rank=rank) for rank in range(1, 101)],
            vs_currency="usd",
            fetched_at=NOW,
        )
        store_quotes(
            session,
            [quote("coin1", -49.0, 1, price=63957.0), quote("coin2", -48.0, 2)],
            vs_currency="usd",
            fetched_at=NOW,
        )
        store_totals(
            session,
            MarketTotals(2.4e12, 1e11, 0.39, 54.1, 8.7, NOW),
            vs_currency="usd",
            fetched_at=NOW,
        )
        store_sentiment(session, Sentiment(38, "Fear", NOW - timedelta(hours=6)), fetched_at=NOW)
    with database.transaction(readonly=True) as session:
        market = latest_market(
            session, coins=["coin1", "coin2"], now=NOW, max_age=timedelta(hours=2), top_coins=100
        )
    assert market is not None
    assert [coin.coin_id for coin in market.coins] == ["coin1", "coin2"]  # no duplicates
    assert market.coins[0].price == 63957.0
    assert [coin.coin_id for coin in market.gainers] == ["coin100", "coin99", "coin98"]
    assert [coin.coin_id for coin in market.losers] == ["coin1", "coin2", "coin3"]
    assert market.movers_from == 100
    assert market.totals is not None and market.totals.market_cap_text == "$2.40T"
    assert market.totals.dominance_text == "54.1%"
    assert market.mood is not None and (market.mood.value, market.mood.label) == (38, "Fear")
    assert not market.stale


def test_old_prices_are_labelled_stale(database: Database) -> None:
    with database.transaction() as session:
        store_quotes(session, [quote("bitcoin", 1.0, 1)], vs_currency="usd", fetched_at=NOW)
    with database.transaction(readonly=True) as session:
        market = latest_market(
            session, coins=["bitcoin"], now=NOW + timedelta(hours=3), max_age=timedelta(hours=2)
        )
    assert market is not None and market.stale


def test_no_market_data_gives_no_market(database: Database) -> None:
    with database.transaction(readonly=True) as session:
        assert (
            latest_market(session, coins=["bitcoin"], now=NOW, max_age=timedelta(hours=2)) is None
        )


def row(symbol: str, change: float | None, name: str = "Coin", price: float = 1.0) -> CoinRow:
    return CoinRow(symbol.lower(), symbol, name, price, change, None, "", "usd")


@pytest.mark.parametrize(
    ("coins", "expected"),
    [
        (
            [row("BTC", 0.61, "Bitcoin", 63957.0), row("SUI", 2.4), row("DOT", -1.3)],
            "Bitcoin rose 0.6% to $63,957.00 in 24 h; 2 of 3 tracked coins are up, "
            "SUI leading (+2.4%) and DOT trailing (-1.3%).",
        ),
        (
            [row("BTC", -2.04, "Bitcoin", 60000.0), row("ETH", -3.0)],
            "Bitcoin fell 2.0% to $60,000.00 in 24 h; 0 of 2 tracked coins are up, ETH falling most (-3.0%).",
        ),
        ([row("BTC", 0.01, "Bitcoin", 5.0)], "Bitcoin held steady at $5.00 in 24 h."),
        ([row("BTC", None)], "Prices are in; 24-hour changes are not available."),
    ],
)
def test_summary_line_rules(coins: list[CoinRow], expected: str) -> None:
    assert summary_line(coins) == expected
