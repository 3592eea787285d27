"""Subscribers' content preferences: each variant is rendered once and every message carries its own."""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Callable
from datetime import date
from email.message import EmailMessage
from pathlib import Path

from sqlalchemy import select

from newsletter.bootstrap import App
from newsletter.editions import DEFAULT_VARIANT, variant_key
from newsletter.models import IssueVariant
from subscribers.model import MailFormat
from subscribers.service import add_subscriber
from tests.conftest import FIXED_NOW

EDITION = date(2026, 11, 24)


def received(tmp_path: Path) -> dict[str, EmailMessage]:
    messages = {}
    for path in (tmp_path / "outbox" / "new").iterdir():
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        messages[message["To"].addresses[0].addr_spec] = message
    return messages


def text_of(message: EmailMessage, kind: str) -> str:
    part = message.get_body((kind,))
    assert part is not None
    content = part.get_content()
    assert isinstance(content, str)
    return content


def test_each_subscriber_gets_their_variant(
    app_factory: Callable[..., App], database_url: str, tmp_path: Path
) -> None:
    app = app_factory(database_url=database_url)
    app.sources.fetch(now=FIXED_NOW)
    with app.database.transaction() as session:
        add_subscriber(session, "everything@example.com", confirmed=True)
        for name in ("eth-fan", "eth-fan-2"):
            fan, _ = add_subscriber(session, f"{name}@example.com", confirmed=True)
            fan.watchlist = ["ethereum", "solana"]
            fan.sections = ["market", "stories"]
        plain, _ = add_subscriber(session, "plain@example.com", confirmed=True)
        plain.format = MailFormat.TEXT
    outcome = app.sending.send(edition_date=EDITION, now=FIXED_NOW, clock=lambda: FIXED_NOW)
    assert outcome.report is not None and outcome.report.sent == 4

    messages = received(tmp_path)
    default = messages["everything@example.com"]
    fan = messages["eth-fan@example.com"]
    assert str(default["Subject"]).startswith("BTC $63,957")
    assert str(fan["Subject"]).startswith("ETH $1,721 (+0.5%)")
    fan_html, fan_text = text_of(fan, "html"), text_of(fan, "plain")
    assert "Ethereum" in fan_html and "Solana" in fan_html
    assert not re.search(r">BTC</span>", fan_html)
    assert not re.search(r"^BTC +\$", fan_text, re.MULTILINE)
    assert re.search(r"^ETH +\$1,720\.67", fan_text, re.MULTILINE)
    assert "Top gainers" not in fan_html and "WHAT MOVED" not in fan_text  # movers not chosen
    assert "Top gainers" in text_of(default, "html")
    assert "TOP STORIES" in fan_text
    plain = messages["plain@example.com"]
    assert plain.get_content_type() == "text/plain"
    assert "MARKET SNAPSHOT" in plain.get_content()

    with app.database.transaction(readonly=True) as session:
        keys = sorted(session.scalars(select(IssueVariant.key)))
    assert keys == sorted(
        [DEFAULT_VARIANT, variant_key(["ethereum", "solana"], ["market", "stories"])]
    )


def test_variant_keys() -> None:
    assert variant_key(None, None) == DEFAULT_VARIANT
    assert variant_key([], ["market", "movers", "stories"]) == DEFAULT_VARIANT
    assert variant_key(["bitcoin"], None) == "w=bitcoin"
    assert variant_key(None, ["stories", "market"]) == "s=market,stories"
    long_key = variant_key([f"coin-{number}" for number in range(50)], None)
    assert long_key.startswith("h=") and len(long_key) <= 200


def test_a_paused_subscriber_gets_nothing(
    app_factory: Callable[..., App], database_url: str, tmp_path: Path
) -> None:
    app = app_factory(database_url=database_url)
    app.sources.fetch(now=FIXED_NOW)
    with app.database.transaction() as session:
        add_subscriber(session, "reader@example.com", confirmed=True)
        away, _ = add_subscriber(session, "away@example.com", confirmed=True)
        away.paused = True
    outcome = app.sending.send(edition_date=EDITION, now=FIXED_NOW, clock=lambda: FIXED_NOW)
    assert outcome.enqueued == 1
    assert set(received(tmp_path)) == {"reader@example.com"}
