"""Unsubscribe requests by mail: the ``mailto:`` of every edition's ``List-Unsubscribe``.

A request names its subscriber by the signed token that the mailto: puts in the subject
(``unsubscribe TOKEN``), found in the subject or the body; without a valid token, by the sender's
address when that address is on the list (it can only unsubscribe itself). Automatic mail (delivery
reports, auto-replies) is not a request. Each message is handled once: afterwards it is moved to the
processed box (see :class:`~newsletter.delivery.mailboxes.Inbox`), so reading again changes nothing.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import enum
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import parseaddr
from pathlib import Path
from urllib.parse import unquote

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.db import Database
from newsletter.delivery.mailboxes import Inbox
from newsletter.webhooks import events
from subscribers import signup
from subscribers.addresses import normalise
from subscribers.errors import BadToken, InvalidAddress
from subscribers.model import Subscriber
from subscribers.tokens import UNSUBSCRIBE, TokenSigner

log = logging.getLogger(__name__)

#: Signed tokens are URL-safe base64 pieces joined by dots.
_TOKEN = re.compile(r"[A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)+")
_MOST_CANDIDATES = 200
_BODY_CHARS = 20_000


class Outcome(enum.StrEnum):
    UNSUBSCRIBED = "unsubscribed"
    ALREADY = "already"  # had left (or been suppressed) before
    UNKNOWN = "unknown"  # no valid token, and the sender is not on the list
    NOT_A_REQUEST = "not a request"  # a delivery report or an auto-reply


@dataclass(frozen=True, slots=True)
class Request:
    """What an unsubscribe mail says: the candidate tokens it carries and who sent it."""

    tokens: tuple[str, ...]
    sender: str | None
    automatic: bool


@dataclass(slots=True)
class UnsubscribeSummary:
    messages: int = 0
    unsubscribed: int = 0
    already: int = 0
    unknown: int = 0
    not_requests: int = 0
    processed_to: str = ""
    notes: list[str] = field(default_factory=list)


def read_request(raw: bytes) -> Request:
    """Parse one message of the unsubscribe mailbox."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    auto = str(message.get("Auto-Submitted", "no")).strip().lower()
    automatic = message.get_content_type() == "multipart/report" or not auto.startswith("no")
    texts = [unquote(str(message.get("Subject", "")))]
    if isinstance(message, EmailMessage):
        body = message.get_body(preferencelist=("plain", "html"))
        if isinstance(body, EmailMessage):
            # An undecodable body is skipped: the subject and the sender still count.
            with contextlib.suppress(LookupError, ValueError):
                texts.append(unquote(str(body.get_content())[:_BODY_CHARS]))
    tokens: list[str] = []
    for text in texts:
        for match in _TOKEN.finditer(text):
            if match.group(0) not in tokens:
                tokens.append(match.group(0))
    sender = parseaddr(str(message.get("From", "")))[1] or None
    return Request(tuple(tokens[:_MOST_CANDIDATES]), sender, automatic)


def apply_request(
    session: Session, signer: TokenSigner, request: Request, *, now: datetime
) -> tuple[Outcome, str]:
    """Honour one request: by its token, else by its sender's own address. Returns the outcome and
    whom it concerned (an address, or the sender when nobody matched)."""
    if request.automatic:
        return Outcome.NOT_A_REQUEST, request.sender or "?"
    subscriber_id = _by_token(signer, request.tokens)
    if subscriber_id is None:
        subscriber_id = _by_sender(session, request.sender)
    if subscriber_id is None:
        return Outcome.UNKNOWN, request.sender or "?"
    result = signup.leave(session, subscriber_id, now=now, reason="mailto")
    if result.outcome is signup.Leave.UNSUBSCRIBED:
        events.emit_about(
            session, events.SUBSCRIBER_UNSUBSCRIBED, result.subscriber_id, now=now, via="mailto"
        )
        return Outcome.UNSUBSCRIBED, result.email or "?"
    if result.outcome is signup.Leave.ALREADY:
        return Outcome.ALREADY, result.email or "?"
    return Outcome.UNKNOWN, request.sender or "?"


def _by_token(signer: TokenSigner, tokens: tuple[str, ...]) -> int | None:
    for token in tokens:
        try:
            return signer.verify(token, UNSUBSCRIBE)
        except BadToken:
            continue
    return None


def _by_sender(session: Session, sender: str | None) -> int | None:
    if not sender:
        return None
    try:
        key = normalise(sender).key
    except InvalidAddress:
        return None
    return session.scalar(select(Subscriber.id).where(Subscriber.email_key == key))


def process_unsubscribe_mailbox(
    database: Database, signer: TokenSigner, path: Path, *, now: datetime
) -> UnsubscribeSummary:
    """Honour every new request in a Maildir or mbox, each in its own transaction, then move it to
    the processed box. Messages processed before are not read again."""
    summary = UnsubscribeSummary()
    with Inbox(path) as inbox:
        summary.processed_to = inbox.processed_location
        for key, raw in inbox:
            request = read_request(raw)
            with database.transaction() as session:
                outcome, who = apply_request(session, signer, request, now=now)
            inbox.done(key)
            _tally(summary, outcome, who)
    if summary.messages:
        log.info(
            "unsubscribe mailbox %s: %d messages, %d unsubscribed, %d already, %d unknown",
            path,
            summary.messages,
            summary.unsubscribed,
            summary.already,
            summary.unknown,
        )
    return summary


def _tally(summary: UnsubscribeSummary, outcome: Outcome, who: str) -> None:
    summary.messages += 1
    if outcome is Outcome.UNSUBSCRIBED:
        summary.unsubscribed += 1
    elif outcome is Outcome.ALREADY:
        summary.already += 1
    elif outcome is Outcome.NOT_A_REQUEST:
        summary.not_requests += 1
    else:
        summary.unknown += 1
        summary.notes.append(
            f"a request from {who} names no subscriber (no valid token; the sender is not on the list)"
        )
