"""Hostile market data from a real local HTTP server: every answer ends in its defined outcome.

Each case serves the CoinGecko-style API (``/coins/markets`` for the watchlist and the top coins,
``/global``) and the Fear & Greed index from pytest-httpserver, fetches through the real pipeline,
builds the edition and sends it into the folder transport. Whatever the server says, the edition
builds, sends, and prints no nonsense.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pytest_httpserver import HTTPServer
from sqlalchemy import select
from werkzeug import Request, Response

from newsletter.bootstrap import App
from newsletter.models import SentimentReading
from newsletter.sources.validation import rejection_counts
from newsletter.web.app import create_app
from subscribers.service import add_subscriber
from tests.conftest import EXAMPLES

NOW = datetime(2026, 11, 24, 6, 30, tzinfo=UTC)
COINGECKO = EXAMPLES / "data" / "coingecko"


def recorded(name: str) -> Any:
    return json.loads((COINGECKO / name).read_text(encoding="utf-8"))


def fng() -> Any:
    return json.loads((EXAMPLES / "data" / "fng.json").read_text(encoding="utf-8"))


Answer = Callable[[Request], Response]


def as_json(data: Any, status: int = 200, **headers: str) -> Answer:
    return lambda _: Response(
        json.dumps(data), status=status, headers=headers or None, content_type="application/json"
    )


def markets_answer(watchlist: Answer, top: Answer) -> Answer:
    def answer(request: Request) -> Response:
        return watchlist(request) if "ids" in request.args else top(request)

    return answer


@pytest.fixture
def served(httpserver: HTTPServer) -> Callable[..., None]:
    def serve(
        *,
        watchlist: Answer | None = None,
        top: Answer | None = None,
        totals: Answer | None = None,
        sentiment: Answer | None = None,
    ) -> None:
        httpserver.expect_request("/api/v3/coins/markets").respond_with_handler(
            markets_answer(
                watchlist or as_json(recorded("coins/markets.json")),
                top or as_json(recorded("coins/markets_top100.json")),
            )
        )
        httpserver.expect_request("/api/v3/global").respond_with_handler(
            totals or as_json(recorded("global.json"))
        )
        httpserver.expect_request("/fng/").respond_with_handler(sentiment or as_json(fng()))

    return serve


@pytest.fixture
def hostile_app(
    app_factory: Callable[..., App], sqlite_url: str, httpserver: HTTPServer
) -> Iterator[App]:
    app = app_factory(
        database_url=sqlite_url,
        market={
            "base_url": httpserver.url_for("/api/v3"),
            "fear_greed_url": httpserver.url_for("/fng/"),
        },
        fetch_timeout=1.0,
        fetch_retries=0,
    )
    with app.database.transaction() as session:
        add_subscriber(session, "reader@example.com", confirmed=True, now=NOW)
    return app


def run_day(app: App) -> tuple[dict[str, str | None], EmailMessage]:
    """Fetch, build and send today's edition; return each source's error and the mail received."""
    outcomes = {outcome.name: outcome.error for outcome in app.sources.fetch(now=NOW)}
    app.editions.build(edition_date=NOW.date(), now=NOW)
    result = app.sending.send(edition_date=NOW.date(), now=NOW)
    assert result.report is not None and result.report.sent == 1, result
    outbox = Path(app.settings.outbox_dir) / "new"
    files = sorted(outbox.iterdir())
    assert len(files) == 1
    message = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return outcomes, message


def parts(message: EmailMessage) -> tuple[str, str]:
    html = message.get_body(("html",))
    text = message.get_body(("plain",))
    assert html is not None and text is not None
    return html.get_content(), text.get_content()


NONSENSE = re.compile(
    r"\d[\d,.]{20,}|-250\.0%|-20\.0%|e\+308|\b(nan|inf|infinity)\b", re.IGNORECASE
)


def assert_no_nonsense(message: EmailMessage) -> None:
    html, text = parts(message)
    subject = str(message["Subject"])
    assert len(subject) < 120 and "\n" not in subject
    for part in (html, text, subject):
        found = NONSENSE.search(part)
        assert found is None, found


def with_coin(field: str, value: Any, coin: str = "bitcoin", name: str = "markets.json") -> Any:
    coins = recorded(f"coins/{name}")
    for raw in coins:
        if raw["id"] == coin:
            if value is KeyError:
                del raw[field]
            else:
                raw[field] = value
    return coins


def test_a_normal_day_fetches_every_source(hostile_app: App, served: Callable[..., None]) -> None:
    served()
    outcomes, message = run_day(hostile_app)
    assert all(error is None for error in outcomes.values()), outcomes
    assert "BTC $63,957" in str(message["Subject"])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("current_price", 1e308),
        ("current_price", -63957.0),
        ("current_price", "63957.0"),
        ("current_price", KeyError),
        ("price_change_percentage_24h_in_currency", -250.0),
        ("price_change_percentage_24h_in_currency", "0.6"),
        ("market_cap", -5.0),
        ("symbol", "btc\r\nBcc: victim@example.com"),
    ],
)
def test_a_bad_value_is_na_and_counted_and_the_edition_sends(
    hostile_app: App, served: Callable[..., None], field: str, value: Any
) -> None:
    served(
        watchlist=as_json(with_coin(field, value)),
        top=as_json(with_coin(field, value, name="markets_top100.json")),
    )
    before = sum(rejection_counts().values())
    outcomes, message = run_day(hostile_app)
    assert outcomes["market data"] is None
    assert_no_nonsense(message)
    _html, text = parts(message)
    if field in ("current_price", "symbol"):
        assert "BTC" not in str(message["Subject"])  # the coin without a believable price is out
        if value is not KeyError:
            assert sum(rejection_counts().values()) > before
    if field == "price_change_percentage_24h_in_currency":
        assert "n/a" in text
        assert "Bitcoin rose" not in text


def test_nan_and_infinity_are_na(hostile_app: App, served: Callable[..., None]) -> None:
    coins = recorded("coins/markets.json")
    coins[0]["price_change_percentage_7d_in_currency"] = "NaN-placeholder"
    coins[1]["market_cap"] = "Infinity-placeholder"
    raw = (
        json.dumps(coins)
        .replace('"NaN-placeholder"', "NaN")
        .replace('"Infinity-placeholder"', "Infinity")
    )
    served(watchlist=lambda _: Response(raw, content_type="application/json"))
    outcomes, message = run_day(hostile_app)
    assert outcomes["market data"] is None
    assert_no_nonsense(message)
    assert "Infinity" not in parts(message)[1]


def test_an_extreme_sparkline_builds_and_sends(
    hostile_app: App, served: Callable[..., None]
) -> None:
    series = {"price": [1e308, -1e308] * 84}
    served(
        watchlist=as_json(with_coin("sparkline_in_7d", series)),
        top=as_json(with_coin("sparkline_in_7d", series, name="markets_top100.json")),
    )
    outcomes, message = run_day(hostile_app)
    assert outcomes["market data"] is None
    assert_no_nonsense(message)


def test_nonsense_totals_are_na(hostile_app: App, served: Callable[..., None]) -> None:
    data = recorded("global.json")
    data["data"]["total_market_cap"]["usd"] = -2.4e12
    data["data"]["market_cap_percentage"]["btc"] = -20.0
    served(totals=as_json(data))
    outcomes, message = run_day(hostile_app)
    assert outcomes["market totals"] is None
    _html, text = parts(message)
    assert "Total market cap: n/a" in text and "BTC dominance: n/a" in text
    assert "-20" not in text


def test_a_future_timestamp_is_not_trusted(hostile_app: App, served: Callable[..., None]) -> None:
    coins = recorded("coins/markets.json")
    top = recorded("coins/markets_top100.json")
    for coin in coins + top:
        coin["last_updated"] = "2026-11-24T20:33:00Z"
    served(watchlist=as_json(coins), top=as_json(top))
    _, message = run_day(hostile_app)
    html, text = parts(message)
    assert "20:33" not in html and "20:33" not in text
    assert "Prices as of 06:30 UTC" in text


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (
            lambda _: Response(
                "<html><body>Just a moment…</body></html>", content_type="text/html"
            ),
            "not JSON",
        ),
        (as_json({"status": {"error_code": 10002, "error_message": "API key missing"}}), "refused"),
        (as_json({"error": "coin not found"}), "not a list"),
        (as_json({"status": {"error_code": 429}}, 429, **{"Retry-After": "3600"}), "3600"),
        (as_json({"error": "boom"}, 500), "500"),
    ],
    ids=["html-200", "error-object-200", "error-200", "429-retry-after", "500"],
)
def test_an_unusable_answer_leaves_the_market_unavailable_and_the_edition_sends(
    hostile_app: App, served: Callable[..., None], answer: Answer, error: str
) -> None:
    served(watchlist=answer, top=answer, totals=answer, sentiment=answer)
    outcomes, message = run_day(hostile_app)
    assert error in (outcomes["market data"] or "")
    assert outcomes["fear & greed"] is not None
    _html, text = parts(message)
    assert "Market data is unavailable for this edition." in text
    assert "$" not in str(message["Subject"])


def test_a_hanging_server_times_out_and_the_edition_sends(
    hostile_app: App, served: Callable[..., None]
) -> None:
    release = threading.Event()

    def hang(_: Request) -> Response:
        # Hang until the day is over: every attempt, retries included, must time out.
        release.wait(60)
        return Response("[]", content_type="application/json")

    # The market API hangs as a whole (the server answers no request of it).
    served(watchlist=hang, top=hang, totals=hang)
    try:
        outcomes, message = run_day(hostile_app)
    finally:
        release.set()
    assert "did not answer" in (outcomes["market data"] or "") or "timed out" in (
        outcomes["market data"] or ""
    )
    assert "Market data is unavailable for this edition." in parts(message)[1]


def test_a_mostly_broken_top_list_is_unavailable_and_movers_are_left_out(
    hostile_app: App, served: Callable[..., None]
) -> None:
    top = recorded("coins/markets_top100.json")
    for coin in top[:80]:
        coin["current_price"] = 1e308
    served(top=as_json(top))
    outcomes, message = run_day(hostile_app)
    assert "most of its values" in (outcomes["top coins"] or "")
    assert outcomes["market data"] is None
    assert_no_nonsense(message)


@pytest.mark.parametrize(
    "reading",
    [
        {"value": "250", "value_classification": "Greed", "timestamp": "1795478400"},
        {"value": "NaN", "value_classification": "Greed", "timestamp": "1795478400"},
        {"value": "38", "value_classification": "Fear\r\nX-Evil: 1", "timestamp": "1795478400"},
    ],
)
def test_a_bad_fear_and_greed_reading_is_left_out(
    hostile_app: App, served: Callable[..., None], reading: dict[str, str]
) -> None:
    served(sentiment=as_json({"data": [reading]}))
    outcomes, message = run_day(hostile_app)
    assert outcomes["fear & greed"] is not None
    _html, text = parts(message)
    assert "X-Evil" not in text and "250" not in text.split("MARKET SNAPSHOT")[1][:400]


def rejected(metrics: str, labels: dict[str, str]) -> float:
    """The value of the rejections counter with exactly ``labels`` (in any order), 0 if absent."""
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            if sample.name == "newsletter_market_values_rejected_total" and sample.labels == labels:
                return sample.value
    return 0.0


def test_refused_values_are_counted_in_metrics(
    hostile_app: App, served: Callable[..., None]
) -> None:
    served(watchlist=as_json(with_coin("current_price", 1e308)))
    labels = {"part": "coins", "field": "price", "reason": "out of range"}
    with TestClient(create_app(hostile_app)) as client:
        before = rejected(client.get("/metrics").text, labels)
        hostile_app.sources.fetch(now=NOW)
        metrics = client.get("/metrics").text
    assert "# TYPE newsletter_market_values_rejected_total counter" in metrics
    assert rejected(metrics, labels) == before + 1


def test_a_429_with_a_short_retry_after_is_retried_and_the_prices_arrive(
    app_factory: Callable[..., App],
    sqlite_url: str,
    httpserver: HTTPServer,
    served: Callable[..., None],
) -> None:
    calls: list[int] = []

    def limited_once(request: Request) -> Response:
        calls.append(1)
        if len(calls) == 1:
            return Response("{}", status=429, headers={"Retry-After": "1"})
        return as_json(recorded("coins/markets.json"))(request)

    served(watchlist=limited_once)
    app = app_factory(
        database_url=sqlite_url,
        market={"base_url": httpserver.url_for("/api/v3"), "fear_greed_url": None},
        fetch_retries=1,
    )
    with app.database.transaction() as session:
        add_subscriber(session, "reader@example.com", confirmed=True, now=NOW)
    outcomes, message = run_day(app)
    assert outcomes["market data"] is None and len(calls) == 2
    assert "BTC $63,957" in str(message["Subject"])


def test_a_future_fear_and_greed_reading_is_dated_when_fetched(
    hostile_app: App, served: Callable[..., None]
) -> None:
    reading = {"value": "38", "value_classification": "Fear", "timestamp": "4102444800"}  # 2100
    served(sentiment=as_json({"data": [reading]}))
    outcomes, message = run_day(hostile_app)
    assert outcomes["fear & greed"] is None
    assert "Fear & Greed index: 38/100 (Fear)" in parts(message)[1]
    with hostile_app.database.transaction(readonly=True) as session:
        stored = session.scalars(select(SentimentReading.measured_at)).all()
    assert stored == [NOW]
