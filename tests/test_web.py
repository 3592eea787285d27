"""The subscriber's pages through the app: subscribe, confirm, preferences, unsubscribe, archive.

Route tests use FastAPI's TestClient against a real database (SQLite, and PostgreSQL where storage
matters) and read what was mailed from the real Maildir outbox.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from newsletter.bootstrap import App
from newsletter.cli import cli
from newsletter.config import Settings
from newsletter.models import MarketSnapshot
from newsletter.services import subscriptions
from newsletter.services.sending import SendOutcome
from newsletter.web.command import web as web_command
from subscribers.import_file import read_csv
from subscribers.model import MailFormat, SubscriberStatus
from subscribers.transfer import import_rows
from tests.conftest import FIXED_NOW
from tests.web_fixtures import (
    Web,
    list_unsubscribe_url,
    path_of,
    text_of,
    web,
    web_db,
    web_factory,
)

__all__ = ["web", "web_db", "web_factory"]  # fixtures used below

HEADLINE = "Get daily crypto insights that make you smarter about your money"
EDITION = date(2026, 11, 24)
NEXT_EDITION = date(2026, 11, 25)


def send_edition(app: App, day: date) -> SendOutcome:
    return app.sending.send(edition_date=day, now=FIXED_NOW)


def edition_messages(web: Web, address: str) -> list[Any]:
    """Edition mails only (not the subscription mails), recognised by their Message-ID."""
    return [
        message
        for message in web.mails_to(address)
        if re.match(r"<\d{8}\.", str(message["Message-ID"]))
    ]


# the subscribe page


def test_the_subscribe_page_says_what_you_get_and_has_an_accessible_form(web: Web) -> None:
    page = web.client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert HEADLINE in html
    assert '<html lang="en">' in html
    assert "<main" in html and "<header" in html and "<footer" in html
    assert '<label for="email">' in html and 'id="email"' in html
    assert 'name="csrf_token"' in html
    assert 'name="website"' in html and 'tabindex="-1"' in html  # the honeypot
    assert 'name="viewport"' in html
    assert "<script>" not in html  # no inline script: the page works without JavaScript


def test_subscribing_sends_a_confirmation_mail_and_records_consent(web_db: Web) -> None:
    web = web_db
    answer = web.subscribe("Reader@Example.com", timezone="Europe/Berlin")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/subscribe/check-inbox"
    page = web.client.get(answer.headers["location"])
    assert "Check your inbox" in page.text

    subscriber = web.subscriber("reader@example.com")
    assert subscriber is not None
    assert subscriber.status is SubscriberStatus.PENDING
    assert subscriber.timezone == "Europe/Berlin"
    assert subscriber.consent_at == FIXED_NOW
    assert subscriber.consent_ip == "testclient"
    assert subscriber.consent_user_agent == "testclient"
    assert subscriber.consent_source == "web:subscribe-form"
    assert subscriber.consent_wording == web.app.settings.consent_wording

    mail = web.last_mail_to("Reader@example.com")
    assert str(mail["Subject"]) == "Confirm your subscription to Daily Crypto Insights"
    assert str(mail["From"]) == web.app.settings.sender
    assert str(mail["Message-ID"]).endswith("@example.com>")
    assert "List-Unsubscribe" not in mail  # not list mail
    assert "/confirm/" in text_of(mail)
    assert mail.get_body(preferencelist=("html",)) is not None


def test_the_answer_is_the_same_whatever_the_address_is(web: Web) -> None:
    web.subscribed("confirmed@example.com")
    web.subscribe("pending@example.com")
    answers = [
        web.subscribe(address)
        for address in ("new@example.com", "pending@example.com", "confirmed@example.com")
    ]
    assert {(a.status_code, a.headers["location"], a.text) for a in answers} == {
        (303, "/subscribe/check-inbox", "")
    }
    # The owner of the confirmed address is told, nobody else is.
    already = web.last_mail_to("confirmed@example.com")
    assert "already subscribed" in str(already["Subject"])
    assert web.subscriber("confirmed@example.com").status is SubscriberStatus.CONFIRMED  # type: ignore[union-attr]


def test_an_invalid_address_shows_the_form_again_with_a_message(web: Web) -> None:
    answer = web.subscribe("not-an-address")
    assert answer.status_code == 422
    assert "does not look like an email address" in answer.text
    assert 'aria-invalid="true"' in answer.text
    assert 'value="not-an-address"' in answer.text
    assert web.messages() == []


def test_an_internationalised_domain_is_accepted_and_mailed_in_ascii(web: Web) -> None:
    assert web.subscribe("leser@bücher.example").status_code == 303
    mail = web.messages()[-1]
    assert str(mail["To"]) == "leser@xn--bcher-kva.example"
    assert web.subscriber("LESER@xn--bcher-kva.example") is not None


# confirming


def test_the_confirmation_link_opens_a_page_and_only_the_post_confirms(web_db: Web) -> None:
    web = web_db
    web.subscribe("reader@example.com")
    path = web.confirm_path("reader@example.com")
    page = web.client.get(path)
    assert page.status_code == 200
    assert "Yes, subscribe me" in page.text
    assert web.subscriber("reader@example.com").status is SubscriberStatus.PENDING  # type: ignore[union-attr]

    web.clock.advance(minutes=5)
    done = web.client.post(path, data={"csrf_token": web.csrf(path)})
    assert done.status_code == 200
    assert "You are subscribed" in done.text
    subscriber = web.subscriber("reader@example.com")
    assert subscriber is not None
    assert subscriber.status is SubscriberStatus.CONFIRMED
    assert subscriber.confirmed_at == web.clock.now
    assert subscriber.confirmed_ip == "testclient"
    assert subscriber.confirm_nonce is None

    welcome = web.last_mail_to("reader@example.com", "Welcome")
    assert "/unsubscribe/" in str(welcome["List-Unsubscribe"])
    # No unsubscribe mailbox is configured: no mailto: that nothing would read.
    assert "mailto:" not in str(welcome["List-Unsubscribe"])
    assert str(welcome["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"
    assert "/preferences/" in text_of(welcome)


def test_a_confirmation_link_works_once(web: Web) -> None:
    web.subscribe("reader@example.com")
    first_link = web.confirm_path("reader@example.com")
    assert web.confirm("reader@example.com").status_code == 200
    # Pressing it again says so, and changes nothing.
    again = web.client.post(first_link, data={"csrf_token": web.csrf("/")})
    assert again.status_code == 200 and "already subscribed" in again.text
    # Leave, sign up again: the old link belongs to the earlier period and is refused.
    unsubscribe = list_unsubscribe_url(web.last_mail_to("reader@example.com", "Welcome"))
    web.client.post(path_of(unsubscribe), data={"List-Unsubscribe": "One-Click"})
    web.subscribe("reader@example.com")
    stale = web.client.post(first_link, data={"csrf_token": web.csrf("/")})
    assert stale.status_code == 410
    assert "already used" in stale.text
    # A signup of an address that left changes nothing stored until its owner confirms (issue 10).
    assert web.subscriber("reader@example.com").status is SubscriberStatus.UNSUBSCRIBED  # type: ignore[union-attr]
    # The new link works.
    assert web.confirm("reader@example.com").status_code == 200
    assert web.subscriber("reader@example.com").status is SubscriberStatus.CONFIRMED  # type: ignore[union-attr]


def test_a_confirmation_link_expires(web: Web) -> None:
    web.subscribe("late@example.com")
    web.subscribe("early@example.com")
    late = web.confirm_path("late@example.com")
    early = web.confirm_path("early@example.com")
    web.clock.advance(hours=47, minutes=59)
    assert web.client.post(early, data={"csrf_token": web.csrf("/")}).status_code == 200
    web.clock.advance(minutes=2)
    page = web.client.get(late)
    assert page.status_code == 410
    assert "expired" in page.text
    answer = web.client.post(late, data={"csrf_token": web.csrf("/")})
    assert answer.status_code == 410
    assert web.subscriber("late@example.com").status is SubscriberStatus.PENDING  # type: ignore[union-attr]


def test_a_tampered_confirmation_link_is_refused(web: Web) -> None:
    web.subscribe("reader@example.com")
    path = web.confirm_path("reader@example.com")
    forged = path[:-2] + ("AA" if not path.endswith("AA") else "BB")
    assert web.client.get(forged).status_code == 400
    assert web.client.post(forged, data={"csrf_token": web.csrf("/")}).status_code == 400
    assert web.client.get("/confirm/not-a-token").status_code == 400


# preferences


def preferences_path(web: Web, address: str) -> str:
    welcome = web.last_mail_to(address, "Welcome")
    return path_of(
        next(url for url in re.findall(r"https?://\S+", text_of(welcome)) if "/preferences/" in url)
    )


def test_preferences_show_and_save_every_choice(web_db: Web) -> None:
    web = web_db
    web.subscribed("reader@example.com")
    path = preferences_path(web, "reader@example.com")
    page = web.client.get(path)
    assert page.status_code == 200
    assert "reader@example.com" in page.text
    assert page.text.count('name="watchlist"') == len(web.app.settings.market.coins)
    saved = web.client.post(
        path,
        data={
            "csrf_token": web.csrf(path),
            "watchlist": ["ethereum", "bitcoin"],
            "sections": ["market", "stories"],
            "send_hour": "6",
            "timezone": "America/New_York",
            "format": "text",
            "paused": "1",
        },
    )
    assert saved.status_code == 200, saved.text
    assert "Saved" in saved.text
    subscriber = web.subscriber("reader@example.com")
    assert subscriber is not None
    assert subscriber.watchlist == ["bitcoin", "ethereum"]  # in the newsletter's order
    assert subscriber.sections == ["market", "stories"]
    assert subscriber.send_hour == 6
    assert subscriber.timezone == "America/New_York"
    assert subscriber.format is MailFormat.TEXT
    assert subscriber.paused is True
    # Choosing everything again means "the defaults".
    web.client.post(
        path,
        data={
            "csrf_token": web.csrf(path),
            "watchlist": list(web.app.settings.market.coins),
            "sections": ["market", "movers", "stories"],
            "format": "html",
        },
    )
    subscriber = web.subscriber("reader@example.com")
    assert subscriber is not None
    assert (subscriber.watchlist, subscriber.sections, subscriber.paused) == (None, None, False)
    assert subscriber.send_hour is None and subscriber.timezone is None


def test_preferences_name_coins_properly_not_by_api_id(
    web: Web, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page showed "Binancecoin", "Ripple", "Near" (API ids) before the market data named them."""
    monkeypatch.setattr(subscriptions, "_coin_cache", {})
    web.subscribed("reader@example.com")
    path = preferences_path(web, "reader@example.com")
    page = web.client.get(path).text
    for label in ("BNB (BNB)", "XRP (XRP)", "NEAR Protocol (NEAR)", "Avalanche (AVAX)"):
        assert label in page
    for api_id in ("Binancecoin", "Ripple", "Near<", "Avalanche 2"):
        assert api_id not in page
    # once fetched, the newest snapshot names a coin; a hostile name never reaches the page
    with web.app.database.transaction() as session:
        for name, symbol in (("Old Name", "OLD"), ("Ripple Renamed", "xrp"), ("X\r\nY", "XRP")):
            session.add(
                MarketSnapshot(
                    coin_id="ripple",
                    symbol=symbol,
                    name=name,
                    vs_currency="usd",
                    price=2.0,
                    fetched_at=FIXED_NOW,
                )
            )
            session.flush()
    monkeypatch.setattr(subscriptions, "_coin_cache", {})
    page = web.client.get(path).text
    assert "XRP (XRP)" in page and "Ripple Renamed" not in page and "Old Name" not in page


def test_invalid_preferences_are_refused_field_by_field(web: Web) -> None:
    web.subscribed("reader@example.com")
    path = preferences_path(web, "reader@example.com")
    answer = web.client.post(
        path,
        data={
            "csrf_token": web.csrf(path),
            "watchlist": ["dogecoin-classic"],
            "send_hour": "25",
            "timezone": "Mars/Olympus",
            "format": "pdf",
        },
    )
    assert answer.status_code == 422
    for message in (
        "choose coins from the list",
        "choose at least one section",
        "between 0 and 23",
        "time zone from the list",
        "HTML or plain text",
    ):
        assert message in answer.text
    subscriber = web.subscriber("reader@example.com")
    assert subscriber is not None
    assert (subscriber.watchlist, subscriber.send_hour, subscriber.format) == (
        None,
        None,
        MailFormat.HTML,
    )


def test_a_bad_preferences_link_is_refused(web: Web) -> None:
    assert web.client.get("/preferences/abc.def").status_code == 400
    page = web.client.get("/preferences")
    assert page.status_code == 200 and "Preferences" in page.text


# unsubscribing


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_one_click_unsubscribe_as_a_mail_client_does_it(web_db: Web, encoding: str) -> None:
    web = web_db
    web.subscribed("reader@example.com")
    url = list_unsubscribe_url(web.last_mail_to("reader@example.com", "Welcome"))
    web.client.cookies.clear()  # a mail client has no cookie
    body: dict[str, Any] = (
        {"data": {"List-Unsubscribe": "One-Click"}}
        if encoding == "urlencoded"
        else {"files": {"List-Unsubscribe": (None, "One-Click")}}
    )
    first = web.client.post(path_of(url), **body)
    assert first.status_code == 200
    subscriber = web.subscriber("reader@example.com")
    assert subscriber is not None and subscriber.status is SubscriberStatus.UNSUBSCRIBED
    assert subscriber.unsubscribed_at == FIXED_NOW
    assert len(web.mails_to("reader@example.com", "unsubscribed")) == 1
    # Idempotent: again is fine, and no second goodbye.
    web.client.cookies.clear()
    second = web.client.post(path_of(url), **body)
    assert second.status_code == 200
    assert len(web.mails_to("reader@example.com", "unsubscribed")) == 1


def test_the_unsubscribe_page_has_a_one_click_button_and_a_way_back(web: Web) -> None:
    web.subscribed("reader@example.com")
    path = path_of(list_unsubscribe_url(web.last_mail_to("reader@example.com", "Welcome")))
    page = web.client.get(path)
    assert page.status_code == 200
    assert 'name="List-Unsubscribe" value="One-Click"' in page.text
    assert web.subscriber("reader@example.com").status is SubscriberStatus.CONFIRMED  # type: ignore[union-attr]
    left = web.client.post(path, data={"List-Unsubscribe": "One-Click"})
    assert "You have unsubscribed" in left.text
    token = path.rsplit("/", 1)[1]
    back = web.client.post(f"/resubscribe/{token}", data={"csrf_token": web.csrf(path)})
    assert back.status_code == 200
    subscriber = web.subscriber("reader@example.com")
    assert subscriber is not None and subscriber.status is SubscriberStatus.CONFIRMED
    assert subscriber.consent_source == "web:resubscribe"
    # The goodbye mail's link leads back to the same page.
    goodbye = web.last_mail_to("reader@example.com", "unsubscribed")
    assert path in text_of(goodbye)


def test_a_forged_unsubscribe_link_changes_nothing(web: Web) -> None:
    web.subscribed("reader@example.com")
    assert (
        web.client.post("/unsubscribe/1.AAAA", data={"List-Unsubscribe": "One-Click"}).status_code
        == 400
    )
    assert web.subscriber("reader@example.com").status is SubscriberStatus.CONFIRMED  # type: ignore[union-attr]
    help_page = web.client.get("/unsubscribe")
    assert help_page.status_code == 200 and "unsubscribe@example.com" in help_page.text


def test_after_unsubscribing_nothing_arrives_even_after_a_reimport(
    web_db: Web, tmp_path: Path
) -> None:
    """The issue's 'done when': an address that left gets nothing in the next send, re-imported or not."""
    web = web_db
    web.subscribed("leaver@example.com")
    web.subscribed("stayer@example.com")
    web.app.sources.fetch(now=FIXED_NOW)
    send_edition(web.app, EDITION)
    assert len(edition_messages(web, "leaver@example.com")) == 1
    edition = edition_messages(web, "leaver@example.com")[0]
    web.client.cookies.clear()
    assert (
        web.client.post(
            path_of(list_unsubscribe_url(edition)), data={"List-Unsubscribe": "One-Click"}
        ).status_code
        == 200
    )

    csv_file = tmp_path / "list.csv"
    csv_file.write_text("email\nLEAVER@example.com\nnewcomer@example.com\n", encoding="utf-8")
    report = import_rows(
        web.app.database.transaction, read_csv(csv_file), confirmed=True, source="t"
    )
    assert (report.added, report.suppressed) == (1, 1)

    send_edition(web.app, NEXT_EDITION)
    assert len(edition_messages(web, "leaver@example.com")) == 1  # still only the first
    assert len(edition_messages(web, "stayer@example.com")) == 2
    assert len(edition_messages(web, "newcomer@example.com")) == 1


# archive


def test_the_archive_lists_sent_editions_without_personal_data(web_db: Web) -> None:
    web = web_db
    assert "No edition has been sent yet" in web.client.get("/archive").text
    web.subscribed("private.person@example.com")
    web.app.sources.fetch(now=FIXED_NOW)
    web.app.editions.build(edition_date=NEXT_EDITION, now=FIXED_NOW)  # a draft is not public
    send_edition(web.app, EDITION)
    listing = web.client.get("/archive")
    assert listing.status_code == 200
    assert "/archive/2026-11-24" in listing.text
    assert "/archive/2026-11-25" not in listing.text
    assert "Tuesday, 24 November 2026" in listing.text

    page = web.client.get("/archive/2026-11-24")
    assert page.status_code == 200
    assert "Daily Crypto Insights" in page.text
    assert "private.person" not in page.text
    assert "__NL_" not in page.text
    assert "/unsubscribe/" not in page.text and "/preferences/" not in page.text
    assert "style-src 'unsafe-inline'" in page.headers["content-security-policy"]
    # The edition mail's view-in-browser link is this page.
    mail = edition_messages(web, "private.person@example.com")[0]
    assert "http://testserver/archive/2026-11-24" in text_of(mail)

    for missing in ("/archive/2026-11-25", "/archive/2026-02-30", "/archive/yesterday"):
        answer = web.client.get(missing)
        assert answer.status_code == 404
        assert "No edition that day" in answer.text


def test_the_atom_feed_lists_the_editions(web: Web) -> None:
    web.subscribed("reader@example.com")
    web.app.sources.fetch(now=FIXED_NOW)
    send_edition(web.app, EDITION)
    feed = web.client.get("/archive.atom")
    assert feed.status_code == 200
    assert feed.headers["content-type"].startswith("application/atom+xml")
    root = ET.fromstring(feed.content)
    ns = {"a": "http://www.w3.org/2005/Atom"}
    entries = root.findall("a:entry", ns)
    assert len(entries) == 1
    link = entries[0].find("a:link", ns)
    assert link is not None and link.get("href") == "http://testserver/archive/2026-11-24"
    assert root.findtext("a:title", namespaces=ns) == "Daily Crypto Insights"


# operations


def test_healthz_and_metrics(web: Web) -> None:
    health = web.client.get("/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "database": "ok"}
    web.subscribe("reader@example.com")
    metrics = web.client.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = metrics.text
    assert "# TYPE newsletter_http_requests_total counter" in text
    assert 'newsletter_http_requests_total{method="POST",route="/subscribe",status="303"} 1' in text
    assert 'newsletter_signups_total{outcome="accepted"} 1' in text
    assert 'newsletter_subscription_mails_total{outcome="sent"} 1' in text
    detailed = web.client.get("/metrics", headers=web.admin()).text
    assert 'newsletter_signup_outcomes_total{outcome="new"} 1' in detailed
    assert 'newsletter_subscribers{status="pending"} 1' in detailed
    assert (
        'newsletter_subscription_mails_by_kind_total{kind="confirm",outcome="sent"} 1' in detailed
    )
    assert "newsletter_http_request_duration_seconds_bucket" in text
    assert "newsletter_database_up 1" in text


def test_healthz_says_when_the_database_does_not_answer(
    web_factory: Callable[..., Web],
) -> None:
    web = web_factory("postgresql+psycopg://nobody@127.0.0.1:1/none")
    answer = web.client.get("/healthz")
    assert answer.status_code == 503
    assert answer.json()["status"] == "unavailable"
    page = web.client.get("/")
    assert page.status_code == 503
    assert "not available right now" in page.text
    assert "127.0.0.1" not in page.text  # the operator's detail stays in the log
    assert "newsletter_database_up 0" in web.client.get("/metrics").text


def test_unknown_pages_get_a_readable_404(web: Web) -> None:
    answer = web.client.get("/no/such/page")
    assert answer.status_code == 404
    assert "Page not found" in answer.text
    assert answer.headers["content-type"].startswith("text/html")
    assert web.client.delete("/").status_code == 405


# the command


def test_the_web_command_serves_on_the_given_address(
    monkeypatch: pytest.MonkeyPatch, make_settings: Callable[..., Settings], sqlite_url: str
) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(
        "newsletter.web.command.uvicorn.run", lambda app, **options: calls.append(options)
    )
    monkeypatch.setenv("NEWSLETTER_CONFIG", "examples/demo.toml")
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", sqlite_url)
    group = _cli_with_web()
    result = CliRunner().invoke(group, ["web", "--host", "127.0.0.2", "--port", "8123"])
    assert result.exit_code == 0, result.output
    assert calls[0]["host"] == "127.0.0.2" and calls[0]["port"] == 8123
    assert calls[0]["proxy_headers"] is False
    assert "--workers" in CliRunner().invoke(group, ["web", "--help"]).output


def test_the_web_command_refuses_the_default_secret_outside_demo_mode(
    monkeypatch: pytest.MonkeyPatch, make_settings: Callable[..., Settings], sqlite_url: str
) -> None:
    monkeypatch.setattr("newsletter.web.command.uvicorn.run", lambda *a, **k: None)
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", sqlite_url)
    result = CliRunner().invoke(_cli_with_web(), ["web"])
    assert result.exit_code == 2
    assert "NEWSLETTER_SECRET_KEY is the default" in result.output
    assert "Traceback" not in result.output


def _cli_with_web() -> Any:
    """The newsletter command group with 'web' registered, as newsletter/cli.py will do it."""
    import copy

    group = copy.copy(cli)
    group.commands = dict(cli.commands)
    group.add_command(web_command)
    return group
