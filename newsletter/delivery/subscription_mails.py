"""Subscription mails composed: confirm, already subscribed, welcome, goodbye.

Each kind is rendered once (HTML with its CSS inlined, and plain text) with slots for the personal
values, then filled in per person by byte substitution, as editions are; the outbox
(:mod:`newsletter.delivery.outbox`) stores and delivers what is composed here.
"""

from __future__ import annotations

import enum
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime, make_msgid

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
    address_header_line,
    header_line,
    list_unsubscribe_header_lines,
    slotted_body,
)
from newsletter.personal import Links
from newsletter.render import Renderer, inline_css
from subscribers.tokens import PREFERENCES, UNSUBSCRIBE, TokenSigner

log = logging.getLogger(__name__)


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
                address_header_line("From", settings.sender),
                b"To: <",
                Slot(RECIPIENT, "header"),
                b">\r\n",
                header_line("Subject", self.subject(kind)),
                b"Date: ",
                Slot(DATE, "header"),
                b"\r\nMessage-ID: ",
                Slot(MESSAGE_ID, "header"),
                b"\r\n",
            ]
            if kind is MailKind.WELCOME:  # the only list mail of the four
                pieces += [
                    header_line(
                        "List-Id", f"{settings.newsletter_name} <{settings.list_id_value}>"
                    ),
                    *list_unsubscribe_header_lines(settings.advertised_unsubscribe_mailto),
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
