"""Finding 7: a scheduled sponsor reaches every reader, labelled, in every variant, part and page.

The sponsor of an edition date (``[[sponsors]]``) is part of the edition itself: the default variant
(what most subscribers, the preview and the archive show), each personalised variant, and the text
part all carry it, labelled; an edition of another date carries none.
"""

from __future__ import annotations

import email
import email.policy
import json
from collections.abc import Callable
from datetime import date
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from newsletter.bootstrap import App
from newsletter.cli import cli
from newsletter.config import Settings
from newsletter.errors import ConfigError
from subscribers.model import MailFormat
from subscribers.service import add_subscriber
from tests.conftest import FIXED_NOW, SmtpServer
from tests.web_fixtures import Web, web_factory

__all__ = ["web_factory"]  # the fixture, used by name

EDITION = date(2026, 11, 24)
OTHER_DAY = date(2026, 11, 25)
SPONSOR_TEXT = "Cold storage you can audit: hardware wallets from Example Vaults."
SPONSOR_URL = "https://vaults.example.org/newsletter?slot=2026-11-24"
OTHER_TEXT = "Tomorrow's slot: a trading desk for people who sleep at night."
SPONSORS: list[dict[str, Any]] = [
    {"date": EDITION, "text": SPONSOR_TEXT, "url": SPONSOR_URL},
    {"date": OTHER_DAY, "text": OTHER_TEXT, "url": "https://desk.example.org/", "label": "Ad"},
]


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def body(message: EmailMessage, kind: str) -> str:
    part = message.get_body((kind,))
    assert part is not None, f"no {kind} part"
    content: str = part.get_content()  # type: ignore[attr-defined]
    return content


def assert_sponsored_html(html: str) -> None:
    """The slot, its label and its link (marked rel=sponsored); never another day's slot."""
    assert ">Sponsored</p>" in html
    assert SPONSOR_TEXT in html
    assert f'href="{SPONSOR_URL}" rel="sponsored"' in html.replace("&amp;", "&")
    assert OTHER_TEXT not in html


def assert_sponsored_text(text: str) -> None:
    assert "\nSPONSORED\n" in text.replace("\r\n", "\n")
    assert " ".join(SPONSOR_TEXT.split()) in " ".join(text.split())
    assert SPONSOR_URL in text
    assert OTHER_TEXT not in " ".join(text.split())


def test_finding_7_sponsor_reaches_default_and_personalised_variants_over_smtp(
    app_factory: Callable[..., App], database_url: str, smtp_server: SmtpServer
) -> None:
    app = app_factory(
        database_url=database_url,
        transport="smtp",
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
        sponsors=SPONSORS,
    )
    app.sources.fetch(now=FIXED_NOW)
    with app.database.transaction() as session:
        add_subscriber(session, "everything@example.com", confirmed=True)
        fan, _ = add_subscriber(session, "eth-fan@example.com", confirmed=True)
        fan.watchlist = ["ethereum"]
        fan.sections = ["market", "stories"]
        plain, _ = add_subscriber(session, "plain@example.com", confirmed=True)
        plain.format = MailFormat.TEXT
    outcome = app.sending.send(edition_date=EDITION, now=FIXED_NOW, clock=lambda: FIXED_NOW)
    assert outcome.report is not None and outcome.report.sent == 3

    received = {item.recipients[0]: parse(item.data) for item in smtp_server.messages}
    assert set(received) == {"everything@example.com", "eth-fan@example.com", "plain@example.com"}
    for address in ("everything@example.com", "eth-fan@example.com"):
        assert_sponsored_html(body(received[address], "html"))
        assert_sponsored_text(body(received[address], "plain"))
    plain_message = received["plain@example.com"]
    assert plain_message.get_content_type() == "text/plain"
    assert_sponsored_text(body(plain_message, "plain"))


def test_finding_7_an_edition_without_a_scheduled_slot_has_no_sponsor(
    app_factory: Callable[..., App], sqlite_url: str
) -> None:
    app = app_factory(database_url=sqlite_url, sponsors=SPONSORS[1:])
    app.sources.fetch(now=FIXED_NOW)
    app.editions.build(edition_date=EDITION, now=FIXED_NOW)
    html = app.editions.preview(edition_date=EDITION).read_text(encoding="utf-8")
    assert 'rel="sponsored"' not in html
    assert OTHER_TEXT not in html


def test_finding_7_sponsor_is_in_issue_preview(
    make_settings: Callable[..., Settings],
    sqlite_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slots = [{**slot, "date": slot["date"].isoformat()} for slot in SPONSORS]
    monkeypatch.setenv("NEWSLETTER_CONFIG", "examples/demo.toml")
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("NEWSLETTER_OUTBOX_DIR", str(tmp_path / "outbox"))
    monkeypatch.setenv("NEWSLETTER_SPONSORS", json.dumps(slots))
    runner = CliRunner()
    for args in (["fetch"], ["issue", "build", "--date", EDITION.isoformat()]):
        result = runner.invoke(cli, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
    target = tmp_path / "preview.html"
    result = runner.invoke(
        cli,
        ["issue", "preview", "--date", EDITION.isoformat(), "-o", str(target)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert_sponsored_html(target.read_text(encoding="utf-8"))


def test_finding_7_sponsor_is_on_the_archive_page(
    web_factory: Callable[..., Web], database_url: str
) -> None:
    web = web_factory(database_url, sponsors=SPONSORS)
    web.subscribed("reader@example.com")
    web.app.sources.fetch(now=FIXED_NOW)
    web.app.sending.send(edition_date=EDITION, now=FIXED_NOW)
    page = web.client.get(f"/archive/{EDITION.isoformat()}")
    assert page.status_code == 200
    assert_sponsored_html(page.text)


def test_finding_7_a_sponsor_slot_cannot_be_unlabelled(
    make_settings: Callable[..., Settings],
) -> None:
    for label in ("", "   "):
        with pytest.raises(ConfigError, match=r"(?i)sponsors.*label"):
            make_settings(sponsors=[{**SPONSORS[0], "label": label}])
