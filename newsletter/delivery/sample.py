"""A test copy of an edition to one address, outside the ledger (``newsletter send --test``)."""

from __future__ import annotations

from email.utils import format_datetime, make_msgid

from kernel.clock import Clock, utcnow
from newsletter import personal
from newsletter.delivery.headers import header_text
from newsletter.delivery.identity import SenderIdentity, wire_address
from newsletter.delivery.message import (
    DATE,
    MESSAGE_ID,
    RECIPIENT,
    UNSUBSCRIBE_MAILTO,
    MessageHeaders,
    prepare_message,
)
from newsletter.delivery.transports import Envelope, SendResult, Transport
from newsletter.editions import SUBJECT_MAX
from newsletter.models import Issue


def send_test(
    *,
    transport: Transport,
    identity: SenderIdentity,
    issue: Issue,
    html: str,
    text: str,
    to: str,
    clock: Clock = utcnow,
) -> SendResult:
    """One test copy of an edition to ``to``; the ledger is not touched. Links point to public pages."""
    headers = MessageHeaders(
        sender=identity.headers_from,
        subject=header_text(f"[Test] {issue.subject}", limit=SUBJECT_MAX),
        list_id=identity.list_id,
        list_name=identity.list_name,
        unsubscribe_mailto=identity.unsubscribe_mailto,
    )
    prepared = prepare_message(headers, html_body=html, text_body=text)
    recipient = wire_address(to)
    mid = make_msgid(idstring="test", domain=identity.domain)
    values = personal.public_values(identity.links) | {
        RECIPIENT: recipient,
        DATE: format_datetime(clock()),
        MESSAGE_ID: mid,
        UNSUBSCRIBE_MAILTO: "test",
        personal.EMAIL: to,
    }
    return transport.send(
        Envelope(sender=identity.envelope_sender, recipient=recipient, message_id=mid),
        prepared.personalise(values),
    )
