"""Each message's personal links belong to its recipient, and to no one else.

Subscriber ids and delivery ids differ here on purpose (pending subscribers come first and get no
delivery), so links built from the wrong id name another person.
"""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Callable
from datetime import date
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import unquote

from fastapi.testclient import TestClient
from sqlalchemy import select

from newsletter.bootstrap import App
from newsletter.models import Delivery
from newsletter.web import create_app
from subscribers.model import Subscriber, SubscriberStatus
from subscribers.service import add_subscriber
from subscribers.tokens import PREFERENCES, UNSUBSCRIBE
from tests.conftest import FIXED_NOW, SmtpServer
from tests.web_fixtures import path_of

EDITION = date(2026, 11, 24)
_LINK = re.compile(r"https?://[^\s<>\"']+/(unsubscribe|preferences)/([\w.\-]+)")
_MAILTO = re.compile(r"<mailto:[^>?]+\?subject=unsubscribe%20([^>]+)>")


def _body_texts(message: EmailMessage) -> list[tuple[str, str]]:
    texts = []
    for part in message.walk():
        if part.get_content_type() in ("text/plain", "text/html"):
            texts.append((part.get_content_type(), part.get_content()))  # type: ignore[attr-defined]
    return texts


def _tokens(message: EmailMessage) -> list[tuple[str, str, str]]:
    """(where, purpose, token) of every personal link in the headers and both body parts."""
    found = []
    header = str(message["List-Unsubscribe"])
    for purpose, token in _LINK.findall(header):
        found.append(("List-Unsubscribe URL", purpose, token))
    for token in _MAILTO.findall(header):
        found.append(("List-Unsubscribe mailto", "unsubscribe", unquote(token)))
    for kind, text in _body_texts(message):
        for purpose, token in _LINK.findall(text):
            found.append((f"body {kind}", purpose, token))
    return found


def test_gap_each_messages_links_belong_to_its_recipient(
    app_factory: Callable[..., App], database_url: str, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    app = app_factory(
        database_url=database_url,
        transport="smtp",
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
        # the mailto: is offered only when its mailbox is read
        unsubscribe_mailbox=str(tmp_path / "unsubscribes"),
    )
    app.sources.fetch(now=FIXED_NOW)
    app.editions.build(edition_date=EDITION, now=FIXED_NOW)
    with app.database.transaction() as session:
        for number in range(3):  # take the first ids and get no delivery
            add_subscriber(session, f"pending{number}@example.com", now=FIXED_NOW)
        for number in range(4):
            add_subscriber(session, f"reader{number}@example.com", confirmed=True, now=FIXED_NOW)
    outcome = app.sending.send(edition_date=EDITION, now=FIXED_NOW)
    assert outcome.report is not None and outcome.report.sent == 4

    with app.database.transaction(readonly=True) as session:
        email_of = dict(session.execute(select(Subscriber.id, Subscriber.email)).all())
        pairs = session.execute(select(Delivery.id, Delivery.subscriber_id)).all()
    assert any(delivery_id != subscriber_id for delivery_id, subscriber_id in pairs)

    signer = app.signer()
    purposes = {"unsubscribe": UNSUBSCRIBE, "preferences": PREFERENCES}
    messages = []
    for received in smtp_server.messages:
        message = email.message_from_bytes(received.data, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        recipient = message["To"].addresses[0].addr_spec
        assert received.recipients == [recipient]
        tokens = _tokens(message)
        wheres = {where for where, _, _ in tokens}
        assert {"List-Unsubscribe URL", "List-Unsubscribe mailto"} <= wheres, wheres
        assert {"body text/plain", "body text/html"} <= wheres, wheres
        assert {purpose for _, purpose, _ in tokens} == {"unsubscribe", "preferences"}
        for where, purpose, token in tokens:
            named = email_of.get(signer.verify(token, purposes[purpose]))
            assert named == recipient, f"{where} {purpose} link of {recipient} names {named}"
        messages.append((recipient, message))
    assert sorted(recipient for recipient, _ in messages) == [
        f"reader{number}@example.com" for number in range(4)
    ]

    # one click on one message's List-Unsubscribe: exactly that person leaves
    leaver, message = messages[1]
    url = _LINK.search(str(message["List-Unsubscribe"]))
    assert url is not None
    with TestClient(create_app(app), base_url="http://testserver") as client:
        answer = client.post(path_of(url.group(0)), data={"List-Unsubscribe": "One-Click"})
    assert answer.status_code == 200
    with app.database.transaction(readonly=True) as session:
        status = dict(session.execute(select(Subscriber.email, Subscriber.status)).all())
    assert status.pop(leaver) is SubscriberStatus.UNSUBSCRIBED
    assert all(
        value
        is (
            SubscriberStatus.PENDING
            if address.startswith("pending")
            else SubscriberStatus.CONFIRMED
        )
        for address, value in status.items()
    ), status
