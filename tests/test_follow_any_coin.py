"""Follow any coin: a reader may follow any of the top coins the market source returns, not only the
newsletter's own; the page finds them without JavaScript, the admin API sets them, unknown coins are
refused, the digest shows each followed coin with its price, and each distinct watchlist is rendered
once. On SQLite and PostgreSQL; the page also in a real browser (chromium, JavaScript off).
"""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Callable, Iterator
from datetime import date
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, expect, sync_playwright
from sqlalchemy import select

from newsletter import screenshot
from newsletter.bootstrap import App
from newsletter.editions import variant_key
from newsletter.models import IssueVariant
from newsletter.services import sources as sources_service
from newsletter.services import subscriptions
from newsletter.web import create_app
from subscribers.service import add_subscriber, get_by_email
from subscribers.tokens import PREFERENCES
from tests.conftest import FIXED_NOW, free_port
from tests.test_web import preferences_path
from tests.web_fixtures import ADMIN_TOKEN, LiveServer, Web, serve, stop, web_db, web_factory

__all__ = ["web_db", "web_factory"]

EDITION = date(2026, 11, 24)


@pytest.fixture(autouse=True)
def fresh_coin_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subscriptions, "_coin_cache", {})


def received(outbox: Path) -> dict[str, EmailMessage]:
    messages = {}
    for path in (outbox / "new").iterdir():
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        messages[message["To"].addresses[0].addr_spec] = message
    return messages


def body(message: EmailMessage, kind: str) -> str:
    part = message.get_body((kind,))
    assert part is not None
    content = part.get_content()
    assert isinstance(content, str)
    return content


def test_a_followed_coin_outside_the_ticker_is_in_that_readers_digest(
    app_factory: Callable[..., App], database_url: str, tmp_path: Path
) -> None:
    app = app_factory(database_url=database_url)
    assert "monero" not in app.settings.market.coins
    app.sources.fetch(now=FIXED_NOW)
    with app.database.transaction() as session:
        add_subscriber(session, "everything@example.com", confirmed=True)
        for name in ("xmr-fan", "xmr-fan-2"):
            fan, _ = add_subscriber(session, f"{name}@example.com", confirmed=True)
            fan.watchlist = ["bitcoin", "monero", "stellar"]
    outcome = app.sending.send(edition_date=EDITION, now=FIXED_NOW, clock=lambda: FIXED_NOW)
    assert outcome.report is not None and outcome.report.sent == 3

    messages = received(tmp_path / "outbox")
    fan_text = body(messages["xmr-fan@example.com"], "plain")
    fan_html = body(messages["xmr-fan@example.com"], "html")
    # price, 24 h and 7 d change of coins that are not in the newsletter's ticker
    assert re.search(r"^XMR +\$198\.41 +▲\+1\.4% +▲\+3\.9%\r?$", fan_text, re.MULTILINE)
    assert re.search(r"^XLM +\$0\.1234 +▼-1\.1% +▼-5\.0%\r?$", fan_text, re.MULTILINE)
    assert "Monero" in fan_html and "Stellar" in fan_html
    assert "Monero" not in body(messages["everything@example.com"], "html").split("Top gainers")[0]
    with app.database.transaction(readonly=True) as session:
        keys = list(session.scalars(select(IssueVariant.key)))
    # two readers with the same watchlist share one rendered variant
    assert keys.count(variant_key(["bitcoin", "monero", "stellar"], None)) == 1
    assert len(keys) == 2


def test_the_fetch_asks_the_market_source_for_every_followed_coin(
    app_factory: Callable[..., App], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = app_factory(database_url=database_url)
    with app.database.transaction() as session:
        fan, _ = add_subscriber(session, "fan@example.com", confirmed=True)
        fan.watchlist = ["monero", "bitcoin"]
    asked: list[list[str]] = []
    real = sources_service.fetch_sources

    def recording(*args: Any, **kwargs: Any) -> Any:
        asked.append(list(kwargs["market"].coins))
        return real(*args, **kwargs)

    monkeypatch.setattr(sources_service, "fetch_sources", recording)
    app.sources.fetch(now=FIXED_NOW)
    assert asked == [[*app.settings.market.coins, "monero"]]


def test_the_page_finds_any_top_coin_without_javascript_and_saves_it(web_db: Web) -> None:
    web = web_db
    web.app.sources.fetch(now=FIXED_NOW)
    web.subscribed("reader@example.com")
    path = preferences_path(web, "reader@example.com")
    page = web.client.get(path)
    assert page.status_code == 200
    assert 'value="monero"' not in page.text  # the usual list: the newsletter's own coins
    assert 'role="search"' in page.text and 'name="q"' in page.text
    found = web.client.get(path, params={"q": "xmr"})
    assert found.status_code == 200
    assert "Monero (XMR)" in found.text and "1 coin match" in found.text
    assert found.text.count('name="watchlist"') == len(web.app.settings.market.coins) + 1
    saved = web.client.post(
        path,
        data={
            "csrf_token": web.csrf(path),
            "watchlist": ["monero", "bitcoin"],
            "sections": ["market", "movers", "stories"],
            "format": "html",
        },
    )
    assert saved.status_code == 200, saved.text
    subscriber = web.subscriber("reader@example.com")
    assert subscriber is not None and subscriber.watchlist == ["bitcoin", "monero"]
    # the reader's own coins stay listed (checked), so saving again keeps them
    again = web.client.get(path).text
    assert re.search(r'value="monero" checked', again)
    refused = web.client.post(
        path,
        data={
            "csrf_token": web.csrf(path),
            "watchlist": ["bitcoin", "not-a-coin"],
            "sections": ["market"],
            "format": "html",
        },
    )
    assert refused.status_code == 422
    assert "unknown coin &#39;not-a-coin&#39;" in refused.text
    subscriber = web.subscriber("reader@example.com")
    assert subscriber is not None and subscriber.watchlist == ["bitcoin", "monero"]


def test_the_api_lists_searches_and_sets_followed_coins(web_db: Web) -> None:
    web = web_db
    web.app.sources.fetch(now=FIXED_NOW)
    coins = web.client.get("/api/coins", headers=web.admin()).json()
    ids = [item["id"] for item in coins["items"]]
    assert ids[: len(web.app.settings.market.coins)] == list(web.app.settings.market.coins)
    assert "monero" in ids and coins["total"] > len(web.app.settings.market.coins)
    search = web.client.get("/api/coins", params={"q": "monero"}, headers=web.admin()).json()
    assert search["items"] == [{"id": "monero", "label": "Monero (XMR)"}]
    page = web.client.get("/api/coins", params={"limit": 5, "offset": 5}, headers=web.admin())
    assert [item["id"] for item in page.json()["items"]] == ids[5:10]

    web.subscribed("reader@example.com")
    subscriber = web.subscriber("reader@example.com")
    assert subscriber is not None
    url = f"/api/subscribers/{subscriber.id}/watchlist"
    answer = web.client.put(url, headers=web.admin(), json={"coins": ["stellar", "bitcoin"]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["watchlist"] == ["bitcoin", "stellar"]
    unknown = web.client.put(url, headers=web.admin(), json={"coins": ["bitcoin", "nocoin"]})
    assert unknown.status_code == 422
    assert "unknown coin 'nocoin'" in unknown.json()["error"]
    assert web.client.put(url, headers=web.admin(), json={"coins": []}).status_code == 422
    reset = web.client.put(url, headers=web.admin(), json={"coins": None})
    assert reset.status_code == 200 and reset.json()["watchlist"] is None
    missing = web.client.put(
        "/api/subscribers/999999/watchlist", headers=web.admin(), json={"coins": ["bitcoin"]}
    )
    assert missing.status_code == 404
    paths = web.client.get("/api/openapi.json").json()["paths"]
    assert "/api/coins" in paths and "put" in paths["/api/subscribers/{subscriber_id}/watchlist"]


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium, args=list(screenshot.CHROMIUM_ARGS)
        )
        yield launched
        launched.close()


@pytest.fixture
def live(app_factory: Callable[..., App], sqlite_url: str) -> Iterator[tuple[App, LiveServer]]:
    port = free_port()
    app = app_factory(
        database_url=sqlite_url, base_url=f"http://127.0.0.1:{port}", admin_token=ADMIN_TOKEN
    )
    server = serve(create_app(app), port)
    yield app, server
    stop(server)


@pytest.mark.browser
def test_a_reader_searches_and_follows_a_coin_in_a_browser_without_javascript(
    browser: Browser, live: tuple[App, LiveServer]
) -> None:
    app, server = live
    app.sources.fetch(now=FIXED_NOW)
    with app.database.transaction() as session:
        reader, _ = add_subscriber(session, "reader@example.com", confirmed=True)
        reader_id, link_key = reader.id, reader.link_key
    token = app.signer().sign(reader_id, PREFERENCES, key=link_key)
    preferences_url = f"{server.url}/preferences/{token}"
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(preferences_url)
    expect(page.get_by_role("heading", level=1)).to_have_text("Your preferences")
    expect(page.get_by_label(re.compile("Monero"))).to_have_count(0)
    page.get_by_label(re.compile("Find a coin to follow")).fill("Monero")
    page.get_by_role("button", name="Search coins").click()
    expect(page.get_by_role("status")).to_contain_text("1 coin match")
    page.get_by_label("Monero (XMR)").check()
    page.get_by_label(re.compile("Dogecoin")).uncheck()
    page.get_by_role("button", name="Save preferences").click()
    expect(page.get_by_role("status")).to_contain_text("Saved")
    expect(page.get_by_label("Monero (XMR)")).to_be_checked()
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input, select, button')]
            .filter(el => el.type !== 'hidden')
            .filter(el => el.tagName === 'BUTTON' ? !el.textContent.trim()
                : !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
            .map(el => el.outerHTML)"""
    )
    assert unlabelled == []
    page.set_viewport_size({"width": 375, "height": 900})
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    context.close()
    with app.database.transaction(readonly=True) as session:
        watchlist = get_by_email(session, "reader@example.com").watchlist
    assert watchlist is not None and "monero" in watchlist and "dogecoin" not in watchlist
    assert len(watchlist) == len(app.settings.market.coins)
