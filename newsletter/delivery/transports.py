"""Transports: where a personalised message goes. A Maildir folder here, SMTP in ``smtp.py``.

A transport says what became of each message (sent, retry later, failed for good). It raises
:class:`TransportError` only when it cannot work at all (no relay, bad credentials, no folder), so
that the sender stops and releases its claims instead of failing every subscriber.
"""

from __future__ import annotations

import enum
import hashlib
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from newsletter.errors import TransportError


class Outcome(enum.StrEnum):
    """What became of one message: a transport's answer, or the sender's pacing."""

    SENT = "sent"
    #: Refused for now (4xx, a dropped connection): queued again after a backoff.
    RETRY = "retry"
    FAILED = "failed"
    #: Not handed over: its route had no room (pacing). Queued again; not an attempt.
    DEFERRED = "deferred"


@dataclass(frozen=True, slots=True)
class Envelope:
    sender: str
    recipient: str
    message_id: str
    #: The bytes end with CRLF and no line starts with a dot (a prebuilt message): SMTP sends
    #: them as they are, without looking for lines to dot-stuff.
    wire_ready: bool = False


@dataclass(frozen=True, slots=True)
class SendResult:
    outcome: Outcome
    code: int | None = None
    detail: str = ""
    #: A permanent refusal of the recipient address itself (unknown user, no such domain).
    recipient_rejected: bool = False


SENT = SendResult(Outcome.SENT, 250, "accepted")


class Transport(Protocol):
    """Delivers prebuilt message bytes. Implementations reuse their connection between calls.

    ``concurrency`` says how many threads may call ``send`` at once (an SMTP pool's size).
    """

    concurrency: int

    def send(self, envelope: Envelope, message: bytes) -> SendResult: ...

    def close(self) -> None: ...


class FolderTransport:
    """Writes each message into a Maildir (``tmp/`` then an atomic rename into ``new/``).

    The file name is derived from the Message-ID, so a message sent again after a crash replaces its
    earlier copy instead of adding a second one.
    """

    concurrency = 1

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        try:
            for sub in ("tmp", "new", "cur"):
                (directory / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TransportError(
                f"cannot create the outbox folder {directory}: {exc.strerror}",
                hint="check NEWSLETTER_OUTBOX_DIR and its permissions",
            ) from None
        self._host = socket.gethostname().replace("/", "_").replace(":", "_") or "localhost"

    def file_name(self, envelope: Envelope) -> str:
        digest = hashlib.sha256(f"{envelope.message_id}\0{envelope.recipient}".encode()).hexdigest()
        return f"{digest[:32]}.{self._host}.eml"

    def send(self, envelope: Envelope, message: bytes) -> SendResult:
        name = self.file_name(envelope)
        temporary = self.directory / "tmp" / f"{name}.{os.getpid()}.{time.monotonic_ns()}"
        trace = (
            f"Return-Path: <{envelope.sender}>\r\nDelivered-To: {envelope.recipient}\r\n"
        ).encode()
        try:
            with temporary.open("wb") as handle:
                handle.write(trace)
                handle.write(message)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.directory / "new" / name)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise TransportError(
                f"cannot write to the outbox folder {self.directory}: {exc.strerror}",
                hint="check free disk space and NEWSLETTER_OUTBOX_DIR",
            ) from None
        return SENT

    def close(self) -> None:
        return None
