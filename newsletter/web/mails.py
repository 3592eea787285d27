"""The subscription mails: confirm, already subscribed, welcome, goodbye.

They are transactional and few, so each is built with :class:`email.message.EmailMessage` (text and
HTML parts, quoted-printable) and handed to the configured transport; the folder transport writes them
into the outbox Maildir like the editions. Only the welcome mail carries ``List-Unsubscribe``: the
others are not list mail. A mail that cannot be sent is logged and counted, never raised into a page:
the page a visitor sees must not depend on the mail (no enumeration, no timing difference).
"""

from __future__ import annotations

import email.policy
import html
import logging
import threading
from collections.abc import Callable
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from newsletter.config import Settings
from newsletter.delivery.message import list_unsubscribe
from newsletter.delivery.sender import wire_address
from newsletter.delivery.transports import Envelope, Outcome, SendResult, Transport
from newsletter.errors import NewsletterError
from newsletter.personal import Links
from newsletter.render import Renderer, inline_css
from newsletter.services.subscriptions import Mail, MailKind, Recipient
from subscribers.tokens import PREFERENCES, UNSUBSCRIBE, TokenSigner

log = logging.getLogger(__name__)

#: Slots for the personal values, rendered into the bodies once (letters and underscores only, so
#: that escaping and CSS inlining leave them intact).
SLOTS = {
    "email": "__NLM_EMAIL__",
    "unsubscribe_url": "__NLM_UNSUBSCRIBE_URL__",
    "preferences_url": "__NLM_PREFERENCES_URL__",
    "confirm_url": "__NLM_CONFIRM_URL__",
}

SUBJECTS = {
    "confirm": "Confirm your subscription to {name}",
    "already": "You are already subscribed to {name}",
    "welcome": "Welcome to {name}",
    "goodbye": "You have unsubscribed from {name}",
}


class Mailer:
    """Composes and sends subscription mails over one transport, opened on first use.

    ``transport`` opens the transport (the configured one); ``on_sent`` hears of each mail's kind
    and outcome.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        renderer: Renderer,
        signer: TokenSigner,
        transport: Callable[[], Transport],
        clock: Callable[[], datetime],
        on_sent: Callable[[str, str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.renderer = renderer
        self.signer = signer
        self.open_transport = transport
        self.clock = clock
        self.on_sent = on_sent
        self.links = Links(settings.base_url)
        self._lock = threading.Lock()
        self._transport: Transport | None = None
        self._bodies: dict[str, tuple[str, str]] = {}

    # the four mails

    def send(self, mail: Mail) -> None:
        """Send a mail a subscription service said is due."""
        if mail.kind is MailKind.CONFIRM:
            self.confirmation(mail.recipient, token=mail.confirm_token)
        elif mail.kind is MailKind.ALREADY:
            self.already_subscribed(mail.recipient)
        elif mail.kind is MailKind.WELCOME:
            self.welcome(mail.recipient)
        else:
            self.goodbye(mail.recipient)

    def confirmation(self, recipient: Recipient, *, token: str) -> None:
        self._send("confirm", recipient, confirm_url=f"{self.links.base_url}/confirm/{token}")

    def already_subscribed(self, recipient: Recipient) -> None:
        self._send("already", recipient)

    def welcome(self, recipient: Recipient) -> None:
        self._send("welcome", recipient, list_mail=True)

    def goodbye(self, recipient: Recipient) -> None:
        self._send("goodbye", recipient)

    # composing

    def personal_links(self, subscriber_id: int, key: str | None) -> tuple[str, str, str]:
        """The unsubscribe token, unsubscribe URL and preferences URL of a subscriber."""
        signer = self.signer
        token = signer.sign(subscriber_id, UNSUBSCRIBE, key=key)
        return (
            token,
            self.links.unsubscribe(token),
            self.links.preferences(signer.sign(subscriber_id, PREFERENCES, key=key)),
        )

    def bodies(self, kind: str) -> tuple[str, str]:
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
            html = inline_css(renderer.render_page(f"mail/{kind}.html.j2", **context))
            text = renderer.render_page(f"mail/{kind}.txt.j2", **context)
            cached = self._bodies[kind] = (html, text)
        return cached

    def subject(self, kind: str) -> str:
        return SUBJECTS[kind].format(name=self.settings.newsletter_name)

    def compose(
        self, kind: str, recipient: Recipient, *, list_mail: bool = False, confirm_url: str = ""
    ) -> tuple[EmailMessage, str]:
        settings = self.settings
        token, unsubscribe_url, preferences_url = self.personal_links(
            recipient.subscriber_id, recipient.link_key
        )
        values = {
            SLOTS["email"]: recipient.email,
            SLOTS["unsubscribe_url"]: unsubscribe_url,
            SLOTS["preferences_url"]: preferences_url,
            SLOTS["confirm_url"]: confirm_url,
        }
        html_body, text_body = self.bodies(kind)
        for slot, value in values.items():
            html_body = html_body.replace(slot, html.escape(value, quote=True))
            text_body = text_body.replace(slot, value)
        to = wire_address(recipient.email)
        message = EmailMessage(policy=email.policy.SMTP if to.isascii() else email.policy.SMTPUTF8)
        message_id = make_msgid(idstring=kind, domain=settings.sender_domain)
        message["From"] = settings.sender
        message["To"] = to
        message["Subject"] = self.subject(kind)
        message["Date"] = format_datetime(self.clock())
        message["Message-ID"] = message_id
        message["Auto-Submitted"] = "auto-generated"
        if list_mail:
            message["List-Id"] = f"{settings.newsletter_name} <{settings.list_id_value}>"
            message["List-Unsubscribe"] = list_unsubscribe(
                unsubscribe_url, token, settings.advertised_unsubscribe_mailto
            )
            message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        # Bodies are encoded now at 76 columns; headers are written unfolded up to SMTP's line
        # limit when sent, so that long signed URLs stay intact (see _send).
        message.set_content(text_body, cte="quoted-printable")
        message.add_alternative(html_body, subtype="html", cte="quoted-printable")
        return message, message_id

    # sending

    def _send(
        self, kind: str, recipient: Recipient, *, list_mail: bool = False, confirm_url: str = ""
    ) -> None:
        outcome = "failed"
        try:
            message, message_id = self.compose(
                kind, recipient, list_mail=list_mail, confirm_url=confirm_url
            )
            settings = self.settings
            data = message.as_bytes(policy=message.policy.clone(max_line_length=998))
            envelope = Envelope(
                sender=settings.envelope_sender,
                recipient=wire_address(recipient.email),
                message_id=message_id,
            )
            result = self._deliver(envelope, data)
            outcome = result.outcome.value
            if result.outcome is not Outcome.SENT:
                log.warning(
                    "%s mail to subscriber %s not sent: %s",
                    kind,
                    recipient.subscriber_id,
                    result.detail,
                )
        except NewsletterError as exc:
            log.error("%s mail to subscriber %s failed: %s", kind, recipient.subscriber_id, exc)
        except Exception:
            log.exception("%s mail to subscriber %s failed", kind, recipient.subscriber_id)
        finally:
            if self.on_sent is not None:
                self.on_sent(kind, outcome)

    def _deliver(self, envelope: Envelope, data: bytes) -> SendResult:
        with self._lock:
            if self._transport is None:
                self._transport = self.open_transport()
            try:
                return self._transport.send(envelope, data)
            except NewsletterError:
                self._close_locked()
                raise

    def _close_locked(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()

    def close(self) -> None:
        with self._lock:
            self._close_locked()
