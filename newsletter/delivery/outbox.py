"""The outbox of subscription mails: confirm, already subscribed, welcome, goodbye.

A subscription mail is composed when it becomes due and written as a row of ``outbox_mails`` in the
same transaction as the subscriber change that made it due, so that it exists exactly when the
change does: a crash after the page answered loses nothing, and the page never waits for SMTP. The
row holds the finished message bytes (the personal links signed at write time); they are cleared
once the mail is sent or given up.

Rows are delivered like editions: claimed under a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL,
``BEGIN IMMEDIATE`` on SQLite), sent, and marked sent; a refusal for now is retried with exponential
backoff and jitter, a permanent one (or the last try) marks the row failed with its reason. A
process killed while sending leaves its rows ``sending`` until the lease passes; another takes them
then.

Nothing here logs a message's bytes or links: a log line names the kind, the row and the subscriber.
"""

from __future__ import annotations

import enum
import logging
import random
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import format_datetime, make_msgid

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from newsletter import personal
from newsletter.config import Settings
from newsletter.delivery.identity import wire_address
from newsletter.delivery.message import (
    DATE,
    MESSAGE_ID,
    RECIPIENT,
    UNSUBSCRIBE_MAILTO,
    PreparedMessage,
    Slot,
    _address_header,
    _header,
    _list_unsubscribe_header,
    slotted_body,
)
from newsletter.delivery.transports import Outcome, SendResult
from newsletter.models import OutboxMail, OutboxStatus
from newsletter.personal import Links
from newsletter.render import Renderer, inline_css
from subscribers.tokens import PREFERENCES, UNSUBSCRIBE, TokenSigner

log = logging.getLogger(__name__)

RETRY_BASE = timedelta(seconds=30)
RETRY_CAP = timedelta(hours=1)
#: Longest reason kept for a try that failed.
ERROR_CHARS = 1000


class MailKind(enum.StrEnum):
    CONFIRM = "confirm"
    ALREADY = "already"
    WELCOME = "welcome"
    GOODBYE = "goodbye"


@dataclass(frozen=True, slots=True)
class Recipient:
    subscriber_id: int
    email: str
    #: The subscriber's link key: the personal links of the mail carry it (see subscribers.links).
    link_key: str | None = None


@dataclass(frozen=True, slots=True)
class Mail:
    """A subscription mail due: its kind, to whom, and for ``confirm`` the confirmation token."""

    kind: MailKind
    recipient: Recipient
    confirm_token: str = ""


@dataclass(frozen=True, slots=True)
class Composed:
    """A subscription mail ready for the wire."""

    kind: MailKind
    subscriber_id: int
    sender: str
    recipient: str
    message_id: str
    message: bytes


#: Slots for the personal values, rendered into the bodies once (letters and underscores only, so
#: that escaping and CSS inlining leave them intact).
SLOTS = {
    "email": "__NLM_EMAIL__",
    "unsubscribe_url": "__NLM_UNSUBSCRIBE_URL__",
    "preferences_url": "__NLM_PREFERENCES_URL__",
    "confirm_url": "__NLM_CONFIRM_URL__",
}

SUBJECTS = {
    MailKind.CONFIRM: "Confirm your subscription to {name}",
    MailKind.ALREADY: "You are already subscribed to {name}",
    MailKind.WELCOME: "Welcome to {name}",
    MailKind.GOODBYE: "You have unsubscribed from {name}",
}


class SubscriptionMails:
    """Composes the four subscription mails; each kind's bodies are rendered and inlined once."""

    def __init__(
        self,
        *,
        settings: Settings,
        renderer: Renderer,
        signer: TokenSigner,
        clock: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self.renderer = renderer
        self.signer = signer
        self.clock = clock
        self.links = Links(settings.base_url)
        self._bodies: dict[MailKind, tuple[str, str]] = {}
        self._prepared: dict[MailKind, PreparedMessage] = {}

    def personal_links(self, subscriber_id: int, key: str | None) -> tuple[str, str, str]:
        """The unsubscribe token, unsubscribe URL and preferences URL of a subscriber."""
        signer = self.signer
        token = signer.sign(subscriber_id, UNSUBSCRIBE, key=key)
        return (
            token,
            self.links.unsubscribe(token),
            self.links.preferences(signer.sign(subscriber_id, PREFERENCES, key=key)),
        )

    def subject(self, kind: MailKind) -> str:
        return SUBJECTS[kind].format(name=self.settings.newsletter_name)

    def bodies(self, kind: MailKind) -> tuple[str, str]:
        """The HTML (CSS inlined) and text of a kind of mail, with slots; rendered once.

        Inlining is the costly part of a mail; the personal values go into the slots afterwards.
        """
        cached = self._bodies.get(kind)
        if cached is None:
            settings = self.settings
            context = {
                **SLOTS,
                "newsletter": settings.newsletter_name,
                "home_url": self.links.home(),
                "archive_url": f"{self.links.base_url}/archive",
                "postal_address": settings.postal_address,
                "unsubscribe_address": settings.unsubscribe_address,
                "subject": self.subject(kind),
                "hours": settings.confirm_token_hours,
            }
            renderer = self.renderer
            html_body = inline_css(renderer.render_page(f"mail/{kind}.html.j2", **context))
            text_body = renderer.render_page(f"mail/{kind}.txt.j2", **context)
            cached = self._bodies[kind] = (html_body, text_body)
        return cached

    def prepared(self, kind: MailKind) -> PreparedMessage:
        """The message of a kind with slots for the personal values; built once per kind."""
        cached = self._prepared.get(kind)
        if cached is None:
            settings = self.settings
            html_body, text_body = self.bodies(kind)
            pieces: list[bytes | Slot] = [
                _address_header("From", settings.sender),
                b"To: <",
                Slot(RECIPIENT, "header"),
                b">\r\n",
                _header("Subject", self.subject(kind)),
                b"Date: ",
                Slot(DATE, "header"),
                b"\r\nMessage-ID: ",
                Slot(MESSAGE_ID, "header"),
                b"\r\n",
            ]
            if kind is MailKind.WELCOME:  # the only list mail of the four
                pieces += [
                    _header("List-Id", f"{settings.newsletter_name} <{settings.list_id_value}>"),
                    *_list_unsubscribe_header(settings.advertised_unsubscribe_mailto),
                    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
                ]
            boundary = f"=_nl_{secrets.token_hex(12)}".encode("ascii")
            pieces += [
                b"Auto-Submitted: auto-generated\r\n",
                b"MIME-Version: 1.0\r\n",
                b'Content-Type: multipart/alternative; boundary="' + boundary + b'"\r\n',
                b"\r\n",
                b"--" + boundary + b"\r\n",
                b'Content-Type: text/plain; charset="utf-8"\r\n',
                b"Content-Transfer-Encoding: quoted-printable\r\n",
                b"\r\n",
                *_body(text_body, html_part=False),
                b"\r\n--" + boundary + b"\r\n",
                b'Content-Type: text/html; charset="utf-8"\r\n',
                b"Content-Transfer-Encoding: quoted-printable\r\n",
                b"\r\n",
                *_body(html_body, html_part=True),
                b"\r\n--" + boundary + b"--\r\n",
            ]
            cached = self._prepared[kind] = PreparedMessage(pieces)
        return cached

    def prepare_all(self) -> None:
        """Build every kind now (rendering and inlining cost a first request otherwise)."""
        try:
            for kind in MailKind:
                self.prepared(kind)
        except Exception:  # a broken template shows in the request that needs it, with its error
            log.exception("the subscription mails could not be prepared in advance")

    def compose(self, mail: Mail) -> Composed:
        """The finished message of ``mail``: the kind's prebuilt bytes with the personal values
        put in (a byte join, as for editions); only the welcome mail is list mail."""
        settings = self.settings
        kind, recipient = mail.kind, mail.recipient
        token, unsubscribe_url, preferences_url = self.personal_links(
            recipient.subscriber_id, recipient.link_key
        )
        confirm_url = (
            f"{self.links.base_url}/confirm/{mail.confirm_token}"
            if kind is MailKind.CONFIRM
            else ""
        )
        to = wire_address(recipient.email)
        message_id = make_msgid(idstring=kind.value, domain=settings.sender_domain)
        data = self.prepared(kind).personalise(
            {
                RECIPIENT: to,
                DATE: format_datetime(self.clock()),
                MESSAGE_ID: message_id,
                personal.UNSUBSCRIBE_URL: unsubscribe_url,
                UNSUBSCRIBE_MAILTO: token,
                SLOTS["email"]: recipient.email,
                SLOTS["unsubscribe_url"]: unsubscribe_url,
                SLOTS["preferences_url"]: preferences_url,
                SLOTS["confirm_url"]: confirm_url,
            }
        )
        return Composed(
            kind=kind,
            subscriber_id=recipient.subscriber_id,
            sender=settings.envelope_sender,
            recipient=to,
            message_id=message_id,
            message=data,
        )


_SLOT = re.compile("|".join(re.escape(slot) for slot in SLOTS.values()))


def _body(text: str, *, html_part: bool) -> list[bytes | Slot]:
    """A quoted-printable body with the personal values as slots, ending with a line break."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.endswith("\n"):
        text += "\n"
    return slotted_body(text, html_part=html_part, slots=_SLOT)


def put(session: Session, composed: Composed, *, now: datetime) -> OutboxMail:
    """Write a composed mail, due now, in the caller's transaction."""
    row = OutboxMail(
        kind=composed.kind.value,
        subscriber_id=composed.subscriber_id,
        recipient=composed.recipient,
        envelope_sender=composed.sender,
        message_id=composed.message_id,
        message=composed.message,
        status=OutboxStatus.QUEUED,
        attempts=0,
        not_before=now,
        created_at=now,
    )
    session.add(row)
    return row


def backoff(attempts: int, *, rng: random.Random | None = None) -> timedelta:
    """Exponential backoff with full jitter: up to 30 s × 2^(attempts-1), capped at 1 h."""
    ceiling = min(RETRY_BASE * (1 << min(max(attempts - 1, 0), 16)), RETRY_CAP)
    draw = rng.random() if rng is not None else random.random()
    return ceiling * (0.5 + 0.5 * draw)


def _due(now: datetime) -> object:
    return or_(
        (OutboxMail.status == OutboxStatus.QUEUED) & (OutboxMail.not_before <= now),
        (OutboxMail.status == OutboxStatus.SENDING) & (OutboxMail.lease_until < now),
    )


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    kind: str
    subscriber_id: int | None
    sender: str
    recipient: str
    message_id: str
    message: bytes
    #: This try's number (1 for the first).
    attempt: int


def claim(session: Session, *, now: datetime, lease: timedelta, limit: int) -> list[Claimed]:
    """Take up to ``limit`` due mails (or mails whose sender's lease passed) for this process."""
    query = (
        select(OutboxMail)
        .where(_due(now))  # type: ignore[arg-type]
        .order_by(OutboxMail.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = list(session.scalars(query))
    claimed = []
    for row in rows:
        row.status = OutboxStatus.SENDING
        row.lease_until = now + lease
        row.attempts += 1
        if row.message is None:  # cannot happen for a row in flight; never send an empty mail
            row.status = OutboxStatus.FAILED
            row.last_error = "the message was cleared"
            continue
        claimed.append(
            Claimed(
                row.id,
                row.kind,
                row.subscriber_id,
                row.envelope_sender,
                row.recipient,
                row.message_id,
                row.message,
                row.attempts,
            )
        )
    return claimed


@dataclass(frozen=True, slots=True)
class Tried:
    """What became of one claimed mail."""

    claimed: Claimed
    result: SendResult


def record(
    session: Session,
    tried: Sequence[Tried],
    *,
    now: datetime,
    max_attempts: int,
    rng: random.Random | None = None,
) -> None:
    """Write what became of claimed mails: sent, due again after a backoff, or failed."""
    for item in tried:
        claimed, result = item.claimed, item.result
        reason = (f"{result.code} " if result.code else "") + (result.detail or "")
        values: dict[str, object]
        if result.outcome is Outcome.SENT:
            values = {
                "status": OutboxStatus.SENT,
                "sent_at": now,
                "message": None,
                "lease_until": None,
                "last_error": None,
            }
        elif result.outcome is Outcome.FAILED or (
            result.outcome is not Outcome.DEFERRED and claimed.attempt >= max_attempts
        ):
            values = {
                "status": OutboxStatus.FAILED,
                "message": None,
                "lease_until": None,
                "last_error": reason[:ERROR_CHARS] or "failed",
            }
        else:
            # A mail not handed over (paced) was no try.
            deferred = result.outcome is Outcome.DEFERRED
            attempts = claimed.attempt - 1 if deferred else claimed.attempt
            wait = RETRY_BASE if deferred else backoff(claimed.attempt, rng=rng)
            values = {
                "status": OutboxStatus.QUEUED,
                "attempts": attempts,
                "not_before": now + wait,
                "lease_until": None,
                "last_error": reason[:ERROR_CHARS] or "retry",
            }
        session.execute(
            update(OutboxMail)
            .where(OutboxMail.id == claimed.id, OutboxMail.status == OutboxStatus.SENDING)
            .values(**values)
        )


def next_due(session: Session) -> datetime | None:
    """When the next queued mail is due, or a sending one's lease passes (None: nothing open)."""
    queued = session.scalar(
        select(func.min(OutboxMail.not_before)).where(OutboxMail.status == OutboxStatus.QUEUED)
    )
    leased = session.scalar(
        select(func.min(OutboxMail.lease_until)).where(OutboxMail.status == OutboxStatus.SENDING)
    )
    times = [value for value in (queued, leased) if value is not None]
    return min(times) if times else None


@dataclass(frozen=True, slots=True)
class Failure:
    id: int
    kind: str
    subscriber_id: int | None
    recipient: str
    attempts: int
    reason: str
    created_at: datetime


def counts(session: Session) -> dict[str, int]:
    """Mails in each status."""
    rows = session.execute(
        select(OutboxMail.status, func.count()).group_by(OutboxMail.status)
    ).all()
    found = {OutboxStatus(status).value: int(count) for status, count in rows}
    return {status.value: found.get(status.value, 0) for status in OutboxStatus}


def failures(session: Session, *, limit: int) -> list[Failure]:
    """The latest mails given up, newest first, with their reasons."""
    rows = session.scalars(
        select(OutboxMail)
        .where(OutboxMail.status == OutboxStatus.FAILED)
        .order_by(OutboxMail.id.desc())
        .limit(limit)
    )
    return [
        Failure(
            row.id,
            row.kind,
            row.subscriber_id,
            row.recipient,
            row.attempts,
            row.last_error or "",
            row.created_at,
        )
        for row in rows
    ]


def forget_subscriber(session: Session, subscriber_id: int) -> int:
    """Remove every mail to a subscriber (erasure, deletion); returns how many."""
    result = session.execute(delete(OutboxMail).where(OutboxMail.subscriber_id == subscriber_id))
    return int(getattr(result, "rowcount", 0) or 0)
