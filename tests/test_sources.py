"""Sources: recorded and hostile feeds, canonical URLs, market data, the fetcher, and ingest."""

from __future__ import annotations

import gzip
import json
import re
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy import func, select
from werkzeug import Request, Response

from newsletter.db import Database
from newsletter.errors import SourceError
from newsletter.ingest import SourceOutcome, fetch_sources, store_items
from newsletter.models import Article, MarketSnapshot
from newsletter.sources.feeds import FeedItem, FeedSource, parse_feed
from newsletter.sources.fetch import USER_AGENT, Fetcher
from newsletter.sources.market import MarketSource, parse_markets
from newsletter.sources.urls import canonical_url

DATA = Path(__file__).resolve().parent.parent / "examples" / "data"
FEEDS = DATA / "feeds"
COINGECKO = DATA / "coingecko"
MARKETS = COINGECKO / "coins" / "markets.json"

RECORDED_AT = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 24, 6, 30, tzinfo=UTC)

#: The reference ticker of examples/data/README.md, in its order.
TICKER = {
    "bitcoin": ("BTC", 63957.0),
    "ethereum": ("ETH", 1720.67),
    "solana": ("SOL", 71.79),
    "binancecoin": ("BNB", 588.47),
    "ripple": ("XRP", 1.12),
    "cardano": ("ADA", 0.1581),
    "dogecoin": ("DOGE", 0.0821),
    "polkadot": ("DOT", 0.936),
    "avalanche-2": ("AVAX", 6.19),
    "chainlink": ("LINK", 7.84),
    "uniswap": ("UNI", 2.98),
    "cosmos": ("ATOM", 1.78),
    "litecoin": ("LTC", 44.43),
    "arbitrum": ("ARB", 0.0828),
    "near": ("NEAR", 2.09),
    "filecoin": ("FIL", 0.7824),
    "sui": ("SUI", 0.7155),
}

RECORDED_FEEDS = {
    "Chainwire": FEEDS / "chainwire.xml",
    "Ledger Daily": FEEDS / "ledgerdaily.atom",
    "DeFi Desk": FEEDS / "defidesk.rdf",
}
ETF_STORY = "https://news.example.com/markets/2026/11/23/spot-bitcoin-etfs-third-day-inflows"

_TAG = re.compile(r"<\s*/?\s*[a-zA-Z!]")
_ENTITY = re.compile(r"&(#\d+|#x[0-9a-fA-F]+|[a-zA-Z]+);")
_DANGEROUS = ("<script", "javascript:", "onerror", "expression(")


@pytest.fixture
def fetcher() -> Iterator[Fetcher]:
    with Fetcher(timeout=2.0, max_bytes=2_000_000, backoff=0.01) as fetcher:
        yield fetcher


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    database = Database.from_url(database_url)
    try:
        yield database
    finally:
        database.dispose()


def assert_safe(items: Sequence[FeedItem]) -> None:
    """No markup that could run in a mail client survives in what we keep of an item."""
    for item in items:
        for text in (item.title, item.summary, item.url, item.guid, item.author or ""):
            lowered = text.lower()
            for bad in _DANGEROUS:
                assert bad not in lowered, f"{bad!r} survived in {text!r}"
        assert not _TAG.search(item.title), item.title
        assert not _TAG.search(item.summary), item.summary
        assert item.url.startswith(("http://", "https://"))


def rss(items: str, *, declaration: str = '<?xml version="1.0" encoding="UTF-8"?>') -> str:
    return (
        f'{declaration}<rss version="2.0"><channel><title>Hostile</title>'
        "<link>https://hostile.example.net/</link><description>d</description>"
        f"{items}</channel></rss>"
    )


def rss_item(
    *,
    title: str = "A plain headline",
    link: str = "https://hostile.example.net/story",
    description: str = "A plain teaser.",
    guid: str | None = None,
    date: str | None = "Tue, 24 Nov 2026 05:41:00 +0000",
) -> str:
    parts = [f"<title>{title}</title>", f"<link>{link}</link>"]
    parts.append(f"<description>{description}</description>")
    if guid is not None:
        parts.append(f'<guid isPermaLink="false">{guid}</guid>')
    if date is not None:
        parts.append(f"<pubDate>{date}</pubDate>")
    return "<item>" + "".join(parts) + "</item>"


def parse(body: str | bytes, source: str = "Hostile") -> list[FeedItem]:
    data = body.encode() if isinstance(body, str) else body
    return parse_feed(data, source=source, now=NOW)


# the recorded feeds


@pytest.mark.parametrize("name", list(RECORDED_FEEDS))
def test_recorded_feeds_parse_into_clean_items(name: str) -> None:
    items = parse(RECORDED_FEEDS[name].read_bytes(), source=name)
    assert len(items) == 12
    assert len({item.guid for item in items}) == 12
    for item in items:
        assert item.source == name
        assert item.title and item.title == item.title.strip()
        assert not _TAG.search(item.title) and not _ENTITY.search(item.title), item.title
        assert canonical_url(item.url) == item.url
        assert "utm_" not in item.url and "#" not in item.url
        assert item.published_at.utcoffset() == timedelta(0)
        # the recording covers the 36 hours before it
        assert RECORDED_AT - timedelta(hours=36) <= item.published_at <= RECORDED_AT
        assert 0 < len(item.summary) <= 300
        assert not _TAG.search(item.summary) and not _ENTITY.search(item.summary), item.summary
        assert not item.summary.lower().endswith("read more")
    # newest first, as recorded
    assert [item.published_at for item in items] == sorted(
        (item.published_at for item in items), reverse=True
    )
    assert_safe(items)


def test_rss_titles_decode_entities_and_keep_typography() -> None:
    items = parse((FEEDS / "chainwire.xml").read_bytes(), source="Chainwire")
    titles = [item.title for item in items]
    assert "Kestrel Exchange lists SUI & ATOM spot pairs for EU customers" in titles
    assert (
        'Why "boring" blocks matter: a plain-English guide to Ethereum\u2019s next hard fork'
        in titles
    )
    assert "Arbitrum DAO votes on trimming its grants budget \u2014 again" in titles
    assert any(title.startswith("Z\u00fcrich custody bank") for title in titles)


def test_rss_tracking_link_is_canonical_and_keeps_its_guid_and_image() -> None:
    items = parse((FEEDS / "chainwire.xml").read_bytes(), source="Chainwire")
    etf = next(item for item in items if item.url == ETF_STORY)
    assert etf.guid == "chainwire-20261123-0412"
    assert etf.published_at == datetime(2026, 11, 24, 3, 58, tzinfo=UTC)
    assert etf.author == "Daniel Okafor"
    assert etf.image_url == "https://news.example.com/media/2026/11/etf-flows-chart-1123.png"
    assert etf.summary.startswith("US spot bitcoin funds took in a combined $212 million")
    solana = next(item for item in items if "Solana validators" in item.title)
    assert solana.url == "https://news.example.com/tech/2026/11/23/solana-validators-client-patch"


def test_atom_entries_use_tag_ids_and_rfc3339_dates() -> None:
    items = parse((FEEDS / "ledgerdaily.atom").read_bytes(), source="Ledger Daily")
    assert all(item.guid.startswith("tag:ledgerdaily.example.org,") for item in items)
    assert items[0].title == "Asia Morning Brief: Bitcoin Flat, SUI Leads Large Caps"
    assert items[0].published_at == datetime(2026, 11, 24, 5, 20, tzinfo=UTC)
    etf = next(item for item in items if item.url == ETF_STORY)
    assert etf.title == "Spot Bitcoin ETFs Log Third Straight Day Of Net Inflows"


def test_rdf_items_use_dc_dates() -> None:
    items = parse((FEEDS / "defidesk.rdf").read_bytes(), source="DeFi Desk")
    assert items[0].title == "Stablecoin lending rates slip below 3% on major money markets"
    assert items[0].published_at == datetime(2026, 11, 24, 5, 5, tzinfo=UTC)
    assert items[-1].published_at == datetime(2026, 11, 22, 21, 0, tzinfo=UTC)
    assert all(item.url.startswith("https://defidesk.example.net/2026/") for item in items)


# canonical URLs


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            "https://news.example.com/a?utm_source=rss&utm_medium=feed&id=3",
            "https://news.example.com/a?id=3",
        ),
        ("https://news.example.com/a?UTM_Campaign=x&page=2", "https://news.example.com/a?page=2"),
        (
            "https://news.example.com/a?fbclid=abc&gclid=1&mc_cid=2&_hsenc=3&ref=home",
            "https://news.example.com/a?ref=home",
        ),
        ("https://news.example.com/a?b=1&b=2&c=", "https://news.example.com/a?b=1&b=2&c="),
        ("https://news.example.com/a#comments", "https://news.example.com/a"),
        ("HTTPS://News.Example.COM/Path/Case", "https://news.example.com/Path/Case"),
        ("https://news.example.com:443/a", "https://news.example.com/a"),
        ("http://news.example.com:80/a", "http://news.example.com/a"),
        ("http://news.example.com:8080/a", "http://news.example.com:8080/a"),
        ("https://news.example.com:80/a", "https://news.example.com:80/a"),
        ("https://news.example.com", "https://news.example.com/"),
        ("  https://news.example.com/a  ", "https://news.example.com/a"),
        ("https://user:secret@news.example.com/a", "https://news.example.com/a"),
    ],
)
def test_canonical_url(raw: str, expected: str) -> None:
    assert canonical_url(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "javascript:alert(1)",
        "JavaScript:alert(document.cookie)//https://news.example.com/",
        "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        "ftp://news.example.com/file",
        "mailto:editor@example.com",
        "/relative/path",
        "//news.example.com/protocol-relative",
        "not a url at all",
        "",
        "http://",
        "https://news.example.com:99999/",
        "https://[::1",
    ],
)
def test_canonical_url_refuses_what_is_not_a_web_link(raw: str) -> None:
    assert canonical_url(raw) is None


def test_the_same_story_through_tracking_links_has_one_url() -> None:
    variants = [
        f"{ETF_STORY}?utm_source=rss&utm_medium=feed",
        f"{ETF_STORY}#top",
        ETF_STORY.replace("news.example.com", "NEWS.example.com:443"),
        f"{ETF_STORY}?fbclid=IwAR0",
    ]
    assert {canonical_url(variant) for variant in variants} == {ETF_STORY}


def test_canonical_url_keeps_ipv6_literals_usable() -> None:
    assert (
        canonical_url("https://[2001:db8::1]:8443/a?utm_source=x") == "https://[2001:db8::1]:8443/a"
    )


# hostile and malformed feeds


def test_script_in_title_and_description_is_dropped_with_its_content() -> None:
    items = parse(
        rss(
            rss_item(
                title="Big &lt;script&gt;alert(1)&lt;/script&gt;news",
                description="&lt;p&gt;Hi&lt;script&gt;steal(document.cookie)&lt;/script&gt; "
                "there&lt;/p&gt;",
            )
            + rss_item(
                title="<![CDATA[Second <script>alert(2)</script>story]]>",
                link="https://hostile.example.net/second",
                description="<![CDATA[<p>Text<script>alert(3)</script> kept</p>]]>",
            )
        )
    )
    assert [(item.title, item.summary) for item in items] == [
        ("Big news", "Hi there"),
        ("Second story", "Text kept"),
    ]
    assert all("alert" not in item.title + item.summary for item in items)
    assert_safe(items)


def test_event_handlers_and_javascript_links_in_html_are_dropped() -> None:
    items = parse(
        rss(
            rss_item(
                description='<![CDATA[<img src="x" onerror="alert(1)">Body '
                '<a href="javascript:alert(1)" onclick="evil()">text</a>'
                '<svg onload="alert(1)"></svg>]]>'
            )
        )
    )
    assert [item.summary for item in items] == ["Body text"]
    assert_safe(items)


@pytest.mark.parametrize(
    "link",
    [
        "javascript:alert(1)",
        "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        "ftp://hostile.example.net/x",
        "",
    ],
)
def test_items_without_a_web_link_are_skipped(link: str) -> None:
    items = parse(
        rss(
            rss_item(title="Bad link", link=link)
            + rss_item(title="Good link", link="https://hostile.example.net/good")
        )
    )
    assert [item.title for item in items] == ["Good link"]
    assert_safe(items)


def test_items_without_a_title_are_skipped() -> None:
    items = parse(
        rss(
            rss_item(title="&lt;script&gt;only a script&lt;/script&gt;")
            + rss_item(title="Kept", link="https://hostile.example.net/kept")
        )
    )
    assert [item.title for item in items] == ["Kept"]


def test_css_expressions_and_style_blocks_are_dropped() -> None:
    items = parse(
        rss(
            rss_item(
                description='<![CDATA[<div style="width: expression(alert(1))">Styled</div>'
                "<style>body{background:url(javascript:alert(1))}</style> words]]>"
            )
        )
    )
    assert [item.summary for item in items] == ["Styled words"]
    assert_safe(items)


def test_a_tracking_pixel_leaves_no_markup_in_the_summary() -> None:
    pixel = "https://tracker.example.net/pixel.gif?u=1"
    items = parse(
        rss(
            rss_item(
                description=f'<![CDATA[<p>The story.</p><img src="{pixel}" width="1" height="1">]]>'
            )
        )
    )
    assert [item.summary for item in items] == ["The story."]
    assert "tracker.example.net" not in items[0].summary
    assert_safe(items)


def test_an_entity_expansion_bomb_does_not_blow_up() -> None:
    entities = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10}">' for n in range(1, 10)
    ]
    body = (
        '<?xml version="1.0"?><!DOCTYPE rss [' + "".join(entities) + "]>"
        '<rss version="2.0"><channel><title>&lol9;</title><item><title>Bomb &lol9;</title>'
        "<link>https://hostile.example.net/bomb</link><description>&lol9;</description>"
        "</item></channel></rss>"
    )
    started = time.monotonic()
    error: str | None = None
    items: list[FeedItem] = []
    try:
        items = parse(body)
    except SourceError as exc:
        error = str(exc)
    assert time.monotonic() - started < 5
    if error is not None:
        assert "Hostile" in error
    for item in items:
        assert len(item.title) <= 300
        assert len(item.summary) <= 300
        assert "lol" * 100 not in item.title + item.summary
    assert_safe(items)


def test_latin1_bytes_declared_as_utf8_still_parse() -> None:
    body = rss(rss_item(title="Z\u00fcrich caf\u00e9 opens crypto desk")).encode("latin-1")
    items = parse(body)
    assert [item.title for item in items] == ["Z\u00fcrich caf\u00e9 opens crypto desk"]


def test_latin1_bytes_without_a_declaration_still_parse() -> None:
    body = rss(rss_item(title="M\u00fcnchen r\u00e9sum\u00e9"), declaration="").encode("latin-1")
    items = parse(body)
    assert [item.title for item in items] == ["M\u00fcnchen r\u00e9sum\u00e9"]


@pytest.mark.filterwarnings("ignore:To avoid breaking existing software:DeprecationWarning")
@pytest.mark.parametrize(
    "date", ["not a date", "Tue, 99 Nov 2026 05:41:00 +0000", "2026-13-45T99:99:99Z", "", None]
)
def test_a_missing_or_impossible_date_becomes_now(date: str | None) -> None:
    items = parse(rss(rss_item(date=date)))
    assert [item.published_at for item in items] == [NOW]


def test_a_date_in_the_future_is_clamped_to_now() -> None:
    items = parse(
        rss(
            rss_item(date="Tue, 24 Nov 2099 05:41:00 +0000")
            + rss_item(
                title="An hour ahead",
                link="https://hostile.example.net/soon",
                date="Tue, 24 Nov 2026 07:30:00 +0000",
            )
            + rss_item(
                title="Offset zone",
                link="https://hostile.example.net/offset",
                date="Tue, 24 Nov 2026 07:00:00 +0200",
            )
        )
    )
    assert [item.published_at for item in items] == [
        NOW,
        NOW,
        datetime(2026, 11, 24, 5, 0, tzinfo=UTC),
    ]


def test_duplicate_guids_in_one_feed_are_stored_once(database: Database) -> None:
    items = parse(
        rss(
            rss_item(title="First copy", guid="dup-1")
            + rss_item(title="Second copy", link="https://hostile.example.net/other", guid="dup-1")
            + rss_item(title="Third", link="https://hostile.example.net/third", guid="dup-2")
        )
    )
    assert len(items) == 3
    with database.transaction() as session:
        assert store_items(session, items, first_seen_at=NOW) == 2
    with database.transaction(readonly=True) as session:
        stored = session.execute(select(Article.guid, Article.title).order_by(Article.guid)).all()
    assert [tuple(row) for row in stored] == [("dup-1", "First copy"), ("dup-2", "Third")]


@pytest.mark.parametrize(
    "body",
    [
        "<!DOCTYPE html><html><head><title>Just a moment...</title></head>"
        "<body><p>Checking your browser</p></body></html>",
        "",
        "   \n",
        '{"items": []}',
    ],
    ids=["html", "empty", "whitespace", "json"],
)
def test_what_is_not_a_feed_is_a_source_error_naming_the_source(body: str) -> None:
    with pytest.raises(SourceError) as caught:
        parse(body, source="Cloudflared Feed")
    assert "Cloudflared Feed" in str(caught.value)
    assert "not an RSS, Atom or RDF feed" in str(caught.value)


def test_a_truncated_feed_keeps_the_items_before_the_cut() -> None:
    whole = rss_item(title="Complete story")
    cut = rss_item(title="Cut story", link="https://hostile.example.net/cut")[:40]
    items = parse(rss(whole + cut)[: -len("</channel></rss>")])
    assert [item.title for item in items] == ["Complete story"]


def test_a_valid_feed_with_no_items_is_empty_not_an_error() -> None:
    assert parse(rss("")) == []


# market data


def test_recorded_markets_give_the_reference_ticker() -> None:
    quotes = parse_markets(MARKETS.read_bytes(), source=str(COINGECKO))
    assert [(quote.coin_id, quote.symbol, quote.price) for quote in quotes] == [
        (coin, symbol, price) for coin, (symbol, price) in TICKER.items()
    ]
    for quote in quotes:
        assert len(quote.sparkline_7d) == 168
        # the sparkline ends near the current price
        assert abs(quote.sparkline_7d[-1] - quote.price) / quote.price < 0.05
        assert quote.change_24h is not None and abs(quote.change_24h) < 5
        assert quote.source_updated_at is not None
        assert quote.source_updated_at.utcoffset() == timedelta(0)
        assert quote.source_updated_at <= RECORDED_AT
    btc = quotes[0]
    assert btc.name == "Bitcoin"
    assert btc.market_cap_rank == 1
    assert btc.change_24h is not None and round(btc.change_24h, 1) == 0.6
    assert btc.image_url is not None and btc.image_url.startswith("https://")


def test_coins_without_a_usable_price_are_skipped() -> None:
    coins = json.loads(MARKETS.read_text())[:6] + json.loads(MARKETS.read_text())[6:11]
    coins[0]["current_price"] = None
    coins[1]["current_price"] = "1720.67"
    coins[2]["current_price"] = -5
    coins[3]["current_price"] = True
    del coins[4]["current_price"]
    quotes = parse_markets(json.dumps(coins).encode(), source="test")
    assert quotes[0].symbol == "ADA"
    assert len(quotes) == 6
    assert quotes[0].price == 0.1581


def test_non_numbers_in_a_sparkline_are_dropped() -> None:
    coins = json.loads(MARKETS.read_text())[:1]
    coins[0]["sparkline_in_7d"] = {"price": [1.0, "2.0", None, 3.0]}
    coins[0]["market_cap_rank"] = "1"
    quotes = parse_markets(json.dumps(coins).encode(), source="test")
    assert quotes[0].sparkline_7d == (1.0, 3.0)
    assert quotes[0].market_cap_rank is None


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"<html>502 Bad Gateway</html>", "not JSON"),
        (b"\xff\xfe\x00garbage", "not JSON"),
        (
            json.dumps(
                {"status": {"error_code": 429, "error_message": "You've exceeded the Rate Limit"}}
            ).encode(),
            "refused the request",
        ),
        (b'{"coins": []}', "not a list of coins"),
    ],
    ids=["html", "binary", "rate-limited", "object"],
)
def test_unusable_market_responses_are_source_errors(body: bytes, expected: str) -> None:
    with pytest.raises(SourceError) as caught:
        parse_markets(body, source="https://api.coingecko.example/api/v3")
    assert expected in str(caught.value)
    assert "https://api.coingecko.example/api/v3" in str(caught.value)
    if b"429" in body:
        assert "429" in str(caught.value)


def test_market_source_on_a_recorded_directory_keeps_the_configured_order(
    fetcher: Fetcher,
) -> None:
    source = MarketSource(
        base_url=str(COINGECKO),
        coins=["sui", "bitcoin", "not-a-coin", "ethereum"],
        vs_currency="usd",
        fetcher=fetcher,
    )
    quotes = source.fetch()
    assert [(quote.symbol, quote.price) for quote in quotes] == [
        ("SUI", 0.7155),
        ("BTC", 63957.0),
        ("ETH", 1720.67),
    ]


def test_market_source_on_a_missing_directory_is_a_source_error(
    fetcher: Fetcher, tmp_path: Path
) -> None:
    source = MarketSource(
        base_url=str(tmp_path), coins=["bitcoin"], vs_currency="usd", fetcher=fetcher
    )
    with pytest.raises(SourceError, match="does not exist"):
        source.fetch()


# the fetcher, against a real local HTTP server


def test_fetcher_returns_the_served_bytes_and_names_itself(
    httpserver: HTTPServer, fetcher: Fetcher
) -> None:
    body = (FEEDS / "chainwire.xml").read_bytes()
    httpserver.expect_request("/feed/").respond_with_data(
        body, content_type="application/rss+xml; charset=utf-8"
    )
    assert fetcher.read(httpserver.url_for("/feed/")) == body
    request, _ = httpserver.log[0]
    assert request.headers["User-Agent"] == USER_AGENT
    assert request.headers["User-Agent"].startswith("newsletter/")


def test_feed_source_over_http_parses_the_served_feed(
    httpserver: HTTPServer, fetcher: Fetcher
) -> None:
    httpserver.expect_request("/atom").respond_with_data(
        (FEEDS / "ledgerdaily.atom").read_bytes(), content_type="application/atom+xml"
    )
    source = FeedSource("Ledger Daily", httpserver.url_for("/atom"), fetcher)
    items = source.fetch(now=NOW)
    assert len(items) == 12
    assert items[0].source == "Ledger Daily"


def test_fetcher_follows_a_redirect(httpserver: HTTPServer, fetcher: Fetcher) -> None:
    body = (FEEDS / "defidesk.rdf").read_bytes()
    httpserver.expect_request("/old").respond_with_data(
        "", status=301, headers={"Location": httpserver.url_for("/new")}
    )
    httpserver.expect_request("/new").respond_with_data(body)
    assert fetcher.read(httpserver.url_for("/old")) == body


@pytest.mark.parametrize("status", [404, 500, 503])
def test_http_errors_are_source_errors_naming_the_status(
    httpserver: HTTPServer, fetcher: Fetcher, status: int
) -> None:
    httpserver.expect_request("/gone").respond_with_data("nope", status=status)
    url = httpserver.url_for("/gone")
    with pytest.raises(SourceError) as caught:
        fetcher.read(url)
    assert str(caught.value).startswith(f"{url} answered HTTP {status}")


def test_an_html_page_over_http_is_a_source_error_naming_the_source(
    httpserver: HTTPServer, fetcher: Fetcher
) -> None:
    httpserver.expect_request("/feed").respond_with_data(
        "<!DOCTYPE html><html><body><h1>Page moved</h1></body></html>",
        content_type="text/html",
    )
    source = FeedSource("Chainwire", httpserver.url_for("/feed"), fetcher)
    with pytest.raises(SourceError, match=r"^Chainwire: the response is not an RSS"):
        source.fetch(now=NOW)


def test_a_declared_oversized_body_is_refused(httpserver: HTTPServer) -> None:
    body = (FEEDS / "chainwire.xml").read_bytes()
    httpserver.expect_request("/big").respond_with_data(body)
    with Fetcher(timeout=2.0, max_bytes=1000) as small, pytest.raises(SourceError) as caught:
        small.read(httpserver.url_for("/big"))
    assert f"sent {len(body):,} bytes, over the limit of 1,000" in str(caught.value)


def test_a_streamed_oversized_body_is_refused(httpserver: HTTPServer) -> None:
    def endless(_request: Request) -> Response:
        chunks = (b"<rss>" + b"x" * 16_384 for _ in range(200))  # about 3 MB, no length
        return Response(chunks, content_type="application/rss+xml")

    httpserver.expect_request("/stream").respond_with_handler(endless)
    with Fetcher(timeout=2.0, max_bytes=50_000) as small:
        with pytest.raises(SourceError) as caught:
            small.read(httpserver.url_for("/stream"))
        assert "sent more than the limit of 50,000 bytes" in str(caught.value)
        _, response = httpserver.log[0]
        assert "Content-Length" not in response.headers  # the cap was enforced while reading


def test_a_compressed_body_is_capped_after_decompression(httpserver: HTTPServer) -> None:
    bomb = gzip.compress(b"\0" * 3_000_000)
    assert len(bomb) < 50_000
    httpserver.expect_request("/bomb").respond_with_data(
        bomb, headers={"Content-Encoding": "gzip"}, content_type="application/rss+xml"
    )
    with Fetcher(timeout=2.0, max_bytes=50_000) as small, pytest.raises(SourceError) as caught:
        small.read(httpserver.url_for("/bomb"))
    assert "limit of 50,000 bytes" in str(caught.value)


def test_a_local_file_over_the_limit_is_refused() -> None:
    with Fetcher(timeout=2.0, max_bytes=1000) as small, pytest.raises(SourceError) as caught:
        small.read(str(FEEDS / "chainwire.xml"))
    assert "over the limit of 1,000" in str(caught.value)
    assert caught.value.hint is not None and "NEWSLETTER_MAX_RESPONSE_BYTES" in caught.value.hint


def test_a_missing_local_path_is_a_source_error(fetcher: Fetcher, tmp_path: Path) -> None:
    missing = tmp_path / "feeds" / "missing.xml"
    with pytest.raises(SourceError, match="does not exist"):
        fetcher.read(str(missing))
    with pytest.raises(SourceError, match="is a directory"):
        fetcher.read(str(tmp_path))


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A server that accepts connections (in the kernel's backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        host, port = listener.getsockname()
        yield f"http://{host}:{port}/feed.xml"


def test_a_server_that_never_answers_times_out(silent_url: str) -> None:
    started = time.monotonic()
    with Fetcher(timeout=0.5, max_bytes=10_000) as quick, pytest.raises(SourceError) as caught:
        quick.read(silent_url)
    assert str(caught.value) == f"{silent_url} did not answer within 0.5 s"
    assert time.monotonic() - started < 3


def test_a_refused_connection_is_a_source_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/feed.xml"  # nothing listens there any more
    with (
        Fetcher(timeout=0.5, max_bytes=10_000, retries=0) as quick,
        pytest.raises(SourceError) as caught,
    ):
        quick.read(url)
    assert str(caught.value).startswith(f"cannot fetch {url}")


@pytest.fixture
def trickling_url() -> Iterator[str]:
    """A server that sends its 10-byte body one byte every 0.07 s."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(5)
    port = listener.getsockname()[1]

    def serve() -> None:
        try:
            connection, _ = listener.accept()
        except OSError:
            return
        with connection:
            connection.recv(65536)
            connection.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\n"
                b"Content-Length: 10\r\nConnection: close\r\n\r\n"
            )
            for _ in range(10):
                time.sleep(0.07)
                try:
                    connection.sendall(b"x")
                except OSError:
                    return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}/feed.xml"
    finally:
        thread.join(timeout=5)
        listener.close()


def test_a_trickling_server_is_cut_off_at_the_timeout(trickling_url: str) -> None:
    started = time.monotonic()
    with Fetcher(timeout=0.2, max_bytes=10_000) as quick, pytest.raises(SourceError):
        quick.read(trickling_url)
    assert time.monotonic() - started < 0.5


def test_market_source_over_http_asks_for_the_configured_coins(
    httpserver: HTTPServer, fetcher: Fetcher
) -> None:
    httpserver.expect_request("/api/v3/coins/markets").respond_with_data(
        MARKETS.read_bytes(), content_type="application/json"
    )
    source = MarketSource(
        base_url=httpserver.url_for("/api/v3/"),
        coins=list(TICKER),
        vs_currency="usd",
        fetcher=fetcher,
        api_key="CG-demo-key",
    )
    quotes = source.fetch()
    assert [quote.symbol for quote in quotes] == [symbol for symbol, _ in TICKER.values()]
    request, _ = httpserver.log[0]
    assert request.path == "/api/v3/coins/markets"
    assert request.args["vs_currency"] == "usd"
    assert request.args["ids"] == ",".join(TICKER)
    assert request.args["sparkline"] == "true"
    assert request.args["price_change_percentage"] == "24h,7d"
    assert request.headers["x-cg-demo-api-key"] == "CG-demo-key"
    assert request.headers["User-Agent"].startswith("newsletter/")


def test_market_source_over_http_sends_no_key_when_none_is_set(
    httpserver: HTTPServer, fetcher: Fetcher
) -> None:
    httpserver.expect_request("/coins/markets").respond_with_data(
        MARKETS.read_bytes(), content_type="application/json"
    )
    source = MarketSource(
        base_url=httpserver.url_for("/"), coins=["bitcoin"], vs_currency="eur", fetcher=fetcher
    )
    assert [quote.symbol for quote in source.fetch()] == ["BTC"]
    request, _ = httpserver.log[0]
    assert "x-cg-demo-api-key" not in request.headers
    assert request.args["vs_currency"] == "eur"


def test_market_source_over_http_reports_a_rate_limit(
    httpserver: HTTPServer, fetcher: Fetcher
) -> None:
    httpserver.expect_request("/coins/markets").respond_with_json(
        {"status": {"error_code": 429, "error_message": "You've exceeded the Rate Limit"}},
        status=429,
    )
    source = MarketSource(
        base_url=httpserver.url_for("/"), coins=["bitcoin"], vs_currency="usd", fetcher=fetcher
    )
    with pytest.raises(SourceError, match="answered HTTP 429"):
        source.fetch()


# ingest, end to end on both databases


def recorded_feeds(fetcher: Fetcher) -> list[FeedSource]:
    return [FeedSource(name, str(path), fetcher) for name, path in RECORDED_FEEDS.items()]


def recorded_market(fetcher: Fetcher, base_url: Path = COINGECKO) -> MarketSource:
    return MarketSource(
        base_url=str(base_url), coins=list(TICKER), vs_currency="usd", fetcher=fetcher, top_coins=0
    )


def count(database: Database, model: type[Article] | type[MarketSnapshot]) -> int:
    with database.transaction(readonly=True) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_fetching_the_recorded_sources_stores_each_story_once(
    database: Database, fetcher: Fetcher
) -> None:
    outcomes = fetch_sources(
        database, feeds=recorded_feeds(fetcher), market=recorded_market(fetcher), now=NOW
    )
    assert outcomes == [
        SourceOutcome("market data", "market", items=17, new=17),
        SourceOutcome("market totals", "market", items=1, new=1),
        SourceOutcome("Chainwire", "feed", items=12, new=12),
        SourceOutcome("Ledger Daily", "feed", items=12, new=11),  # the ETF story is a repeat
        SourceOutcome("DeFi Desk", "feed", items=12, new=12),
    ]
    assert all(outcome.ok for outcome in outcomes)
    assert count(database, Article) == 35
    assert count(database, MarketSnapshot) == 17
    with database.transaction(readonly=True) as session:
        etf = session.scalars(select(Article).where(Article.url == ETF_STORY)).one()
        assert etf.source == "Chainwire"
        assert etf.published_at == datetime(2026, 11, 24, 3, 58, tzinfo=UTC)
        assert etf.first_seen_at == NOW
        btc = session.scalars(
            select(MarketSnapshot).where(MarketSnapshot.coin_id == "bitcoin")
        ).one()
        assert (btc.symbol, btc.price, btc.vs_currency) == ("BTC", 63957.0, "usd")
        assert btc.sparkline_7d is not None and len(btc.sparkline_7d) == 168
        assert btc.fetched_at == NOW


def test_fetching_twice_stores_no_story_twice(database: Database, fetcher: Fetcher) -> None:
    fetch_sources(database, feeds=recorded_feeds(fetcher), market=None, now=NOW)
    later = NOW + timedelta(hours=1)
    outcomes = fetch_sources(database, feeds=recorded_feeds(fetcher), market=None, now=later)
    assert [(outcome.name, outcome.items, outcome.new) for outcome in outcomes] == [
        ("Chainwire", 12, 0),
        ("Ledger Daily", 12, 0),
        ("DeFi Desk", 12, 0),
    ]
    assert count(database, Article) == 35
    with database.transaction(readonly=True) as session:
        first_seen = set(session.scalars(select(Article.first_seen_at)))
    assert first_seen == {NOW}


def test_one_broken_source_does_not_stop_the_others(
    database: Database, fetcher: Fetcher, tmp_path: Path
) -> None:
    feeds = recorded_feeds(fetcher)
    feeds.insert(1, FeedSource("Gone Weekly", str(tmp_path / "gone.xml"), fetcher))
    broken_market = tmp_path / "coingecko"
    (broken_market / "coins").mkdir(parents=True)
    (broken_market / "coins" / "markets.json").write_text("<html>502 Bad Gateway</html>")
    outcomes = fetch_sources(
        database, feeds=feeds, market=recorded_market(fetcher, broken_market), now=NOW
    )
    by_name = {outcome.name: outcome for outcome in outcomes}
    assert list(by_name) == [
        "market data",
        "market totals",
        "Chainwire",
        "Gone Weekly",
        "Ledger Daily",
        "DeFi Desk",
    ]
    assert not by_name["market totals"].ok
    assert not by_name["market data"].ok
    assert "not JSON" in (by_name["market data"].error or "")
    assert not by_name["Gone Weekly"].ok
    assert by_name["Gone Weekly"].error == f"{tmp_path / 'gone.xml'} does not exist"
    assert [(by_name[n].ok, by_name[n].new) for n in RECORDED_FEEDS] == [
        (True, 12),
        (True, 11),
        (True, 12),
    ]
    assert count(database, Article) == 35
    assert count(database, MarketSnapshot) == 0


def test_a_market_response_without_the_configured_coins_is_reported(
    database: Database, fetcher: Fetcher
) -> None:
    market = MarketSource(
        base_url=str(COINGECKO),
        coins=["not-a-coin"],
        vs_currency="usd",
        fetcher=fetcher,
        top_coins=0,
    )
    outcome, _totals = fetch_sources(database, feeds=[], market=market, now=NOW)
    assert outcome.error == "the response held none of the configured coins"
    assert count(database, MarketSnapshot) == 0


def test_a_malformed_sparkline_does_not_stop_the_feeds(
    sqlite_url: str, fetcher: Fetcher, tmp_path: Path
) -> None:
    coins = json.loads(MARKETS.read_text())
    coins[0]["sparkline_in_7d"] = [63000.0, 63957.0]  # a list where an object belongs
    (tmp_path / "coins").mkdir()
    (tmp_path / "coins" / "markets.json").write_text(json.dumps(coins))
    database = Database.from_url(sqlite_url)
    try:
        outcomes = fetch_sources(
            database,
            feeds=recorded_feeds(fetcher),
            market=recorded_market(fetcher, tmp_path),
            now=NOW,
        )
        by_name = {outcome.name: outcome for outcome in outcomes}
        assert by_name["market data"].ok  # the coin keeps its price, without a trend line
        assert [by_name[name].ok for name in RECORDED_FEEDS] == [True, True, True]
        assert count(database, Article) == 35
    finally:
        database.dispose()


def test_an_overlong_link_does_not_stop_the_other_feeds(
    database: Database,
    fetcher: Fetcher,
    tmp_path: Path,
) -> None:
    long_link = "https://hostile.example.net/" + "a" * 2100
    hostile = tmp_path / "hostile.xml"
    hostile.write_text(
        rss(
            rss_item(title="Overlong", link=long_link)
            + rss_item(title="Normal", link="https://hostile.example.net/normal")
        )
    )
    feeds = [FeedSource("Hostile", str(hostile), fetcher), *recorded_feeds(fetcher)]
    outcomes = fetch_sources(database, feeds=feeds, market=None, now=NOW)
    assert [outcome.name for outcome in outcomes] == ["Hostile", *RECORDED_FEEDS]
    assert all(outcome.ok for outcome in outcomes[1:])
    assert count(database, Article) >= 35
