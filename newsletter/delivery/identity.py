"""Who sends and how each message is named: the sender's identity, worker names, Message-IDs."""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import socket
from dataclasses import dataclass
from datetime import date

from newsletter import personal
from newsletter.models import Issue
from subscribers.tokens import TokenSigner


@dataclass(frozen=True, slots=True)
class SenderIdentity:
    """Who sends: the headers' source and the secret that signs personal links."""

    headers_from: str
    envelope_sender: str
    list_id: str
    list_name: str
    #: None when no mailbox reads the unsubscribe address (List-Unsubscribe has the link only).
    unsubscribe_mailto: str | None
    domain: str
    links: personal.Links
    signer: TokenSigner
    secret: bytes


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def wire_address(email: str) -> str:
    """The address with an ASCII (IDNA) domain, as SMTP and headers without SMTPUTF8 need it."""
    local, _, domain = email.rpartition("@")
    if domain.isascii():
        return email
    return f"{local}@{domain.encode('idna').decode('ascii')}"


def message_id(identity: SenderIdentity, issue: Issue, subscriber_id: int) -> str:
    """Stable per (edition, subscriber): a re-send after a crash carries the same Message-ID."""
    mac = _keyed(identity.secret).copy()
    mac.update(b"%d:%d" % (issue.id, subscriber_id))
    return f"<{_day(issue.edition_date)}.{subscriber_id}.{mac.hexdigest()[:16]}@{identity.domain}>"


@functools.lru_cache(maxsize=8)
def _keyed(secret: bytes) -> hmac.HMAC:
    """HMAC-SHA256 with the key already set up (copied for each message)."""
    return hmac.new(secret, digestmod=hashlib.sha256)


@functools.lru_cache(maxsize=64)
def _day(edition_date: date) -> str:
    """The edition date as the Message-ID writes it (formatted once, not per message)."""
    return f"{edition_date:%Y%m%d}"
