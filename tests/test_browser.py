"""The whole journey in a real browser (Debian's chromium through Playwright) on a real uvicorn server.

subscribe → confirmation mail from the outbox → confirm → preferences → receive a send → one-click
unsubscribe as a mail client does it → re-import → nothing in the next send. JavaScript is off for
the journey: every page must work without it. Each page is screenshot at 1280 and 375 px into
``$WEB_SHOTS`` (default var/web-shots in the checkout) and checked for horizontal overflow and labelled controls.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from datetime import date
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from newsletter import screenshot
from newsletter.bootstrap import App
from newsletter.web import create_app
from subscribers.model import MailFormat, SubscriberStatus
from subscribers.service import get_by_email
from tests.conftest import FIXED_NOW, free_port
from tests.web_fixtures import (
    ADMIN_TOKEN,
    LiveServer,
    links_in,
    list_unsubscribe_url,
    read_outbox,
    serve,
    stop,
)

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = list(screenshot.CHROMIUM_ARGS)
SHOTS = Path(
    os.environ.get("WEB_SHOTS") or Path(__file__).resolve().parent.parent / "var" / "web-shots"
)
WIDTHS = (1280, 375)
HEADLINE = "Get daily crypto insights that make you smarter about your money"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def live(app_factory: Callable[..., App], sqlite_url: str) -> Iterator[tuple[App, LiveServer]]:
    port = free_port()
    app = app_factory(
        database_url=sqlite_url,
        base_url=f"http://127.0.0.1:{port}",
        admin_token=ADMIN_TOKEN,
    )
    server = serve(create_app(app), port)
    yield app, server
    stop(server)


def wait_for_mail(
    outbox: Path, address: str, subject: str, *, count: int = 1, timeout: float = 10.0
) -> EmailMessage:
    """Mail goes out just after the page answers (a background task): poll the Maildir."""
    found: list[EmailMessage] = []

    def arrived() -> bool:
        found[:] = [
            m
            for m in read_outbox(outbox)
            if str(m["To"]).lower() == address.lower() and subject in str(m["Subject"])
        ]
        return len(found) >= count

    _poll(arrived, timeout, f"no mail '{subject}' to {address}")
    return found[-1]


def _poll(condition: Callable[[], bool], timeout: float, message: str) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(0.05)


def edition_mails(outbox: Path, address: str) -> list[EmailMessage]:
    return [
        m
        for m in read_outbox(outbox)
        if str(m["To"]).lower() == address.lower() and re.match(r"<\d{8}\.", str(m["Message-ID"]))
    ]


def check_page(page: Page, name: str) -> None:
    """Screenshot at each width; no sideways scrolling at 375 px; every control has a label."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=True)
        overflow = page.evaluate("document.documentElement.scrollWidth")
        assert overflow <= width, f"{name} scrolls sideways at {width} px ({overflow} px wide)"
    page.set_viewport_size({"width": 1280, "height": 900})
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea, button')]
            .filter(el => el.type !== 'hidden' && !el.closest('[aria-hidden="true"]'))
            .filter(el => {
                if (el.tagName === 'BUTTON') return !el.textContent.trim();
                if (el.labels && el.labels.length) return false;
                return !el.getAttribute('aria-label');
            })
            .map(el => el.outerHTML)"""
    )
    assert unlabelled == [], f"{name}: controls without a label: {unlabelled}"
    if page.locator("main").count():
        assert page.locator("h1").count() == 1, f"{name}: one h1"
        assert page.evaluate("document.documentElement.lang") == "en"


@pytest.mark.slow
def test_the_whole_journey_without_javascript(
    browser: Browser, live: tuple[App, LiveServer]
) -> None:
    app, server = live
    outbox = Path(app.settings.outbox_dir)
    api = httpx.Client(base_url=server.url, headers=AUTH)
    assert (
        api.post(
            "/api/subscribers", json={"email": "control@example.com", "confirmed": True}
        ).status_code
        == 201
    )
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()

    # 1. The subscribe page.
    page.goto(f"{server.url}/")
    expect(page.get_by_role("heading", level=1)).to_have_text(HEADLINE)
    check_page(page, "01-subscribe")
    # The honeypot is out of the tab order: Tab from the address goes to the button.
    page.get_by_label("Your email address").focus()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Subscribe"

    # An invalid address first (the browser's own check is bypassed with a plausible typo).
    page.get_by_label("Your email address").fill("reader@example")
    page.get_by_role("button", name="Subscribe").click()
    expect(page.get_by_role("alert")).to_contain_text("does not look like an email address")
    check_page(page, "02-subscribe-error")

    page.get_by_label("Your email address").fill("Reader@Example.com")
    page.get_by_role("button", name="Subscribe").click()
    expect(page).to_have_url(f"{server.url}/subscribe/check-inbox")
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your inbox")
    check_page(page, "03-check-inbox")

    # 2. The confirmation mail, read from the outbox; its link opens a page with a button.
    confirmation = wait_for_mail(outbox, "Reader@example.com", "Confirm your subscription")
    confirm_url = next(url for url in links_in(confirmation) if "/confirm/" in url)
    assert confirm_url.startswith(server.url)
    page.goto(confirm_url)
    expect(page.get_by_role("heading", level=1)).to_have_text("Confirm your subscription")
    check_page(page, "04-confirm")
    with app.database.transaction(readonly=True) as session:
        assert get_by_email(session, "reader@example.com").status is SubscriberStatus.PENDING
    page.get_by_role("button", name="Yes, subscribe me").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("You are subscribed")
    check_page(page, "05-confirmed")

    # 3. Preferences, from the welcome mail's link.
    welcome = wait_for_mail(outbox, "Reader@example.com", "Welcome")
    assert str(welcome["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"
    preferences_url = next(url for url in links_in(welcome) if "/preferences/" in url)
    page.goto(preferences_url)
    expect(page.get_by_role("heading", level=1)).to_have_text("Your preferences")
    check_page(page, "06-preferences")
    for coin in ("Dogecoin", "Polkadot", "Filecoin"):
        page.get_by_label(re.compile(coin)).uncheck()
    page.get_by_label("Top movers").uncheck()
    page.get_by_label("Hour").select_option("6")
    page.get_by_label("Time zone").select_option("Europe/Berlin")
    page.get_by_label("Plain text").check()
    page.get_by_role("button", name="Save preferences").click()
    expect(page.get_by_role("status")).to_contain_text("Saved")
    check_page(page, "07-preferences-saved")
    with app.database.transaction(readonly=True) as session:
        reader = get_by_email(session, "reader@example.com")
        assert reader.status is SubscriberStatus.CONFIRMED
        assert reader.sections == ["market", "stories"]
        assert reader.watchlist is not None and "dogecoin" not in reader.watchlist
        assert len(reader.watchlist) == len(app.settings.market.coins) - 3
        assert (reader.send_hour, reader.timezone, reader.format) == (
            6,
            "Europe/Berlin",
            MailFormat.TEXT,
        )

    # 4. A send: the edition arrives, in plain text as chosen.
    app.sources.fetch(now=FIXED_NOW)
    app.sending.send(edition_date=date(2026, 11, 24), now=FIXED_NOW)
    received = edition_mails(outbox, "reader@example.com")
    assert len(received) == 1
    edition = received[0]
    assert edition.get_content_type() == "text/plain"
    assert len(edition_mails(outbox, "control@example.com")) == 1

    # 5. One-click unsubscribe as a mail client does it: a POST to the List-Unsubscribe URL,
    #    no cookie, no page.
    unsubscribe_url = list_unsubscribe_url(edition)
    assert str(edition["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"
    answer = httpx.post(unsubscribe_url, data={"List-Unsubscribe": "One-Click"})
    assert answer.status_code == 200
    with app.database.transaction(readonly=True) as session:
        assert get_by_email(session, "reader@example.com").status is SubscriberStatus.UNSUBSCRIBED
    page.goto(unsubscribe_url)
    expect(page.get_by_role("heading", level=1)).to_have_text("You are unsubscribed")
    expect(page.get_by_role("button", name="Subscribe again")).to_be_visible()
    check_page(page, "08-unsubscribed")
    wait_for_mail(outbox, "Reader@example.com", "You have unsubscribed")

    # 6. Re-imported from CSV, still suppressed; the next send brings nothing.
    report = api.post(
        "/api/subscribers/import",
        params={"confirmed": "true"},
        files={"file": ("list.csv", b"email\nreader@example.com\n", "text/csv")},
    ).json()
    assert (report["added"], report["suppressed"]) == (0, 1)
    app.sending.send(edition_date=date(2026, 11, 25), now=FIXED_NOW)
    assert len(edition_mails(outbox, "reader@example.com")) == 1
    assert len(edition_mails(outbox, "control@example.com")) == 2

    # 7. The archive and an edition's web version.
    page.goto(f"{server.url}/archive")
    expect(page.get_by_role("heading", level=1)).to_have_text("Archive")
    check_page(page, "09-archive")
    page.locator("main .editions a").first.click()
    expect(page).to_have_url(re.compile(r"/archive/2026-11-2[45]$"))
    assert "reader@example.com" not in page.content().lower()
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(SHOTS / f"10-edition-{width}.png"), full_page=True)

    # 8. The one-click page of someone still subscribed, and the pages without a personal link.
    control_edition = edition_mails(outbox, "control@example.com")[-1]
    page.goto(list_unsubscribe_url(control_edition))
    expect(page.get_by_role("button", name="Unsubscribe")).to_be_visible()
    check_page(page, "11-unsubscribe")
    for name, path in (
        ("12-not-found", "/no/such/page"),
        ("13-bad-link", "/confirm/garbage"),
        ("14-unsubscribe-help", "/unsubscribe"),
    ):
        page.goto(f"{server.url}{path}")
        check_page(page, name)
    context.close()
    api.close()


def test_the_browser_time_zone_is_taken_when_javascript_runs(
    browser: Browser, live: tuple[App, LiveServer]
) -> None:
    app, server = live
    context = browser.new_context(java_script_enabled=True, timezone_id="Asia/Tokyo")
    page = context.new_page()
    page.goto(f"{server.url}/")
    page.get_by_label("Your email address").fill("tokyo@example.com")
    page.get_by_role("button", name="Subscribe").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your inbox")
    with app.database.transaction(readonly=True) as session:
        assert get_by_email(session, "tokyo@example.com").timezone == "Asia/Tokyo"
    context.close()


def test_pages_carry_no_script_but_the_time_zone_one(
    browser: Browser, live: tuple[App, LiveServer]
) -> None:
    _, server = live
    context = browser.new_context()
    page = context.new_page()
    blocked: list[Any] = []
    page.on(
        "console", lambda message: blocked.append(message.text) if message.type == "error" else None
    )
    page.goto(f"{server.url}/")
    page.goto(f"{server.url}/archive")
    assert blocked == []  # no CSP violation, no script error
    context.close()
