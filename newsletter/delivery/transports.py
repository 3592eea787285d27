"""Transports: where a personalised message goes. SMTP and a Maildir folder, behind one Protocol.

A transport says what became of each message (sent, retry later, failed for good). It raises
:class:`TransportError` only when it cannot work at all (no relay, bad credentials, no folder), so
that the sender stops and releases its claims instead of failing every subscriber.
"""

from __future__ import annotations

import enum
import hashlib
import os
import smtplib
import socket
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from newsletter.errors import TransportError


class Outcome(enum.StrEnum):
    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Envelope:
    sender: str
    recipient: str
    message_id: str


@dataclass(frozen=True, slots=True)
class SendResult:
    outcome: Outcome
    code: int | None = None
    detail: str = ""
    #: A permanent refusal of the recipient address itself (unknown user, no such domain).
    recipient_rejected: bool = False


SENT = SendResult(Outcome.SENT, 250, "accepted")


class Transport(Protocol):
    """Delivers prebuilt message bytes. Implementations reuse their connection between calls."""

    def send(self, envelope: Envelope, message: bytes) -> SendResult: ...

    def close(self) -> None: ...


class FolderTransport:
    """Writes each message into a Maildir (``tmp/`` then an atomic rename into ``new/``).

    The file name is derived from the Message-ID, so a message sent again after a crash replaces its
    earlier copy instead of adding a second one.
    """

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


TlsMode = Literal["none", "starttls", "ssl"]


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    host: str
    port: int
    tls: TlsMode = "none"
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0
    local_hostname: str | None = None


class SmtpTransport:
    """Sends over one SMTP connection, opened on first use and reused; reopened after it drops."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self._smtp: smtplib.SMTP | None = None

    @property
    def where(self) -> str:
        return f"{self.config.host}:{self.config.port}"

    def _connect(self) -> smtplib.SMTP:
        config = self.config
        try:
            smtp: smtplib.SMTP
            if config.tls == "ssl":
                smtp = smtplib.SMTP_SSL(
                    config.host,
                    config.port,
                    timeout=config.timeout,
                    local_hostname=config.local_hostname,
                    context=ssl.create_default_context(),
                )
            else:
                smtp = smtplib.SMTP(
                    config.host,
                    config.port,
                    timeout=config.timeout,
                    local_hostname=config.local_hostname,
                )
            smtp.ehlo()
            if config.tls == "starttls":
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if config.username:
                smtp.login(config.username, config.password or "")
        except smtplib.SMTPAuthenticationError as exc:
            raise TransportError(
                f"the SMTP relay {self.where} refused the login of {config.username!r}: "
                f"{exc.smtp_code} {_text(exc.smtp_error)}",
                hint="check NEWSLETTER_SMTP_USERNAME and NEWSLETTER_SMTP_PASSWORD",
            ) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise TransportError(
                f"the SMTP relay {self.where} does not support what NEWSLETTER_SMTP_TLS or the login "
                f"needs: {exc}",
                hint="check NEWSLETTER_SMTP_TLS (none, starttls or ssl)",
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise TransportError(
                f"cannot connect to the SMTP relay {self.where}: {exc}",
                hint="check NEWSLETTER_SMTP_HOST, NEWSLETTER_SMTP_PORT and that the relay is running",
            ) from None
        return smtp

    def send(self, envelope: Envelope, message: bytes) -> SendResult:
        if self._smtp is None:
            self._smtp = self._connect()
        try:
            self._smtp.sendmail(envelope.sender, [envelope.recipient], message)
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = exc.recipients.get(envelope.recipient, (554, b"recipient refused"))
            return _refused(code, reply, recipient=True)
        except smtplib.SMTPSenderRefused as exc:
            self._reset()
            if exc.smtp_code >= 500:
                raise TransportError(
                    f"the SMTP relay {self.where} refuses the sender {envelope.sender}: "
                    f"{exc.smtp_code} {_text(exc.smtp_error)}",
                    hint="check NEWSLETTER_FROM / NEWSLETTER_RETURN_PATH and the relay's policy",
                ) from None
            return _refused(exc.smtp_code, exc.smtp_error, recipient=False)
        except smtplib.SMTPDataError as exc:
            self._reset()
            return _refused(exc.smtp_code, exc.smtp_error, recipient=False)
        except smtplib.SMTPResponseException as exc:
            self._drop()
            return _refused(exc.smtp_code, exc.smtp_error, recipient=False)
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._drop()
            return SendResult(Outcome.RETRY, None, f"connection lost: {exc}")
        return SENT

    def _reset(self) -> None:
        if self._smtp is None:
            return
        try:
            self._smtp.rset()
        except (smtplib.SMTPException, OSError):
            self._drop()

    def _drop(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.close()
            finally:
                self._smtp = None

    def close(self) -> None:
        if self._smtp is None:
            return
        try:
            self._smtp.quit()
        except (smtplib.SMTPException, OSError):
            pass
        finally:
            self._drop()


def _text(reply: bytes | str) -> str:
    if isinstance(reply, bytes):
        return reply.decode("utf-8", "replace")
    return reply


def _refused(code: int, reply: bytes | str, *, recipient: bool) -> SendResult:
    detail = f"{code} {_text(reply)}".strip()
    if 400 <= code < 500:
        return SendResult(Outcome.RETRY, code, detail)
    return SendResult(Outcome.FAILED, code, detail, recipient_rejected=recipient)
