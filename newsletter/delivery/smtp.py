"""SMTP delivery: a pool of reused connections, each sending prebuilt bytes without re-encoding.

Each message is one SMTP transaction: ``RSET`` (only after a transaction left unfinished),
``MAIL FROM``, ``RCPT TO``, ``DATA``, the bytes, ``.``. When the relay offers PIPELINING the four
commands go in one write and their replies are read together, one round trip instead of four.
Messages from :mod:`newsletter.delivery.message` never have a line starting with a dot and end
with CRLF (their envelope says ``wire_ready``), so they are sent as they are, unread; anything else
is dot-stuffed first. A transaction that ended with the reply to the message needs no ``RSET``
before the next one.

Replies map to outcomes: 2xx sent; 4xx, a timeout or a dropped connection retry later (421 also
closes the connection, and tells the pacer to slow the route); 5xx fails the delivery, and a 5xx
to ``RCPT`` marks the recipient's address as rejected (the caller suppresses it).
"""

from __future__ import annotations

import queue
import re
import smtplib
import ssl
import threading
from dataclasses import dataclass
from typing import Literal

from newsletter.delivery.transports import SENT, Envelope, Outcome, SendResult
from newsletter.errors import TransportError

TlsMode = Literal["none", "starttls", "ssl"]
_LEADING_DOT = re.compile(rb"(?m)^\.")
_FORBIDDEN = re.compile("[\r\n<>]")


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    host: str
    port: int
    tls: TlsMode = "none"
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0
    local_hostname: str | None = None
    pool_size: int = 1


def _text(reply: bytes | str) -> str:
    if isinstance(reply, bytes):
        return reply.decode("utf-8", "replace")
    return reply


def _result(code: int, reply: bytes | str, *, stage: str) -> SendResult:
    detail = f"{code} {_text(reply)}".strip().replace("\n", " ")
    if 200 <= code < 400:
        return SendResult(Outcome.SENT, code, detail)
    if code < 500:
        return SendResult(Outcome.RETRY, code, f"{stage}: {detail}")
    return SendResult(
        Outcome.FAILED, code, f"{stage}: {detail}", recipient_rejected=stage == "RCPT"
    )


def _dot_stuffed(message: bytes) -> bytes:
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    if message.startswith(b".") or b"\n." in message:
        message = _LEADING_DOT.sub(b"..", message)
    return message


def _send_data(smtp: smtplib.SMTP, message: bytes) -> None:
    """The message and the end-of-data line in one system call where possible, without joining
    them into a copy of the message."""
    sock = smtp.sock
    if sock is None:
        raise smtplib.SMTPServerDisconnected("please run connect() first")
    if isinstance(sock, ssl.SSLSocket):
        sock.sendall(message + b".\r\n")
        return
    parts = [memoryview(message), memoryview(b".\r\n")]
    while parts:
        sent = sock.sendmsg(parts)
        while parts and sent >= len(parts[0]):
            sent -= len(parts[0])
            parts.pop(0)
        if parts and sent:
            parts[0] = parts[0][sent:]


class _Closing(Exception):
    def __init__(self, result: SendResult) -> None:
        self.result = result


class SmtpConnection:
    """One connection to the relay, opened on first use, reopened after it drops."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self._smtp: smtplib.SMTP | None = None
        self._dirty = False  # a transaction was left unfinished on this connection: RSET first
        self._pipelining = False

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
        self._pipelining = smtp.has_extn("pipelining")
        self._dirty = False
        return smtp

    def send(self, envelope: Envelope, message: bytes) -> SendResult:
        if _FORBIDDEN.search(envelope.sender) or _FORBIDDEN.search(envelope.recipient):
            return SendResult(Outcome.FAILED, None, "address contains a forbidden character")
        if self._smtp is None:
            self._smtp = self._connect()
        smtp = self._smtp
        try:
            result = self._transaction(smtp, envelope, message)
        except _Closing as closing:
            self.drop()
            return closing.result
        except smtplib.SMTPServerDisconnected as exc:
            self.drop()
            return SendResult(Outcome.RETRY, None, f"connection lost: {exc}")
        except TimeoutError:
            self.drop()
            return SendResult(
                Outcome.RETRY, None, f"the relay did not answer within {self.config.timeout:g} s"
            )
        except OSError as exc:
            self.drop()
            return SendResult(Outcome.RETRY, None, f"connection lost: {exc}")
        return result

    def _reply(self, smtp: smtplib.SMTP, stage: str) -> tuple[int, bytes]:
        code, reply = smtp.getreply()
        if code == 421:
            raise _Closing(SendResult(Outcome.RETRY, 421, f"{stage}: 421 {_text(reply)}"))
        return code, reply

    def _transaction(self, smtp: smtplib.SMTP, envelope: Envelope, message: bytes) -> SendResult:
        options = " SMTPUTF8" if not (envelope.sender + envelope.recipient).isascii() else ""
        mail = f"MAIL FROM:<{envelope.sender}>{options}\r\n".encode()
        rcpt = f"RCPT TO:<{envelope.recipient}>\r\n".encode()
        reset = self._dirty
        self._dirty = True
        if self._pipelining:
            smtp.send((b"RSET\r\n" if reset else b"") + mail + rcpt + b"DATA\r\n")
            if reset:
                self._reply(smtp, "RSET")
            mail_code, mail_reply = self._reply(smtp, "MAIL")
            rcpt_code, rcpt_reply = self._reply(smtp, "RCPT")
            data_code, data_reply = self._reply(smtp, "DATA")
        else:
            if reset:
                smtp.send(b"RSET\r\n")
                self._reply(smtp, "RSET")
            smtp.send(mail)
            mail_code, mail_reply = self._reply(smtp, "MAIL")
            if mail_code != 250:
                return self._sender_refused(mail_code, mail_reply, envelope)
            smtp.send(rcpt)
            rcpt_code, rcpt_reply = self._reply(smtp, "RCPT")
            if rcpt_code not in (250, 251):
                return _result(rcpt_code, rcpt_reply, stage="RCPT")
            smtp.send(b"DATA\r\n")
            data_code, data_reply = self._reply(smtp, "DATA")
        if mail_code != 250:
            if data_code == 354:
                smtp.send(b".\r\n")
                self._reply(smtp, "DATA")
            return self._sender_refused(mail_code, mail_reply, envelope)
        if rcpt_code not in (250, 251):
            if data_code == 354:  # a relay that accepts DATA with no valid recipient: send nothing
                smtp.send(b".\r\n")
                self._reply(smtp, "DATA")
            return _result(rcpt_code, rcpt_reply, stage="RCPT")
        if data_code != 354:
            return _result(data_code, data_reply, stage="DATA")
        _send_data(smtp, message if envelope.wire_ready else _dot_stuffed(message))
        code, reply = self._reply(smtp, "end of DATA")
        self._dirty = False  # the reply to the message ends the transaction, whatever it says
        if code == 250:
            return SENT
        return _result(code, reply, stage="end of DATA")

    def _sender_refused(self, code: int, reply: bytes, envelope: Envelope) -> SendResult:
        if code >= 500:
            raise TransportError(
                f"the SMTP relay {self.where} refuses the sender {envelope.sender}: {code} {_text(reply)}",
                hint="check NEWSLETTER_FROM / NEWSLETTER_RETURN_PATH and the relay's policy",
            )
        return _result(code, reply, stage="MAIL")

    def drop(self) -> None:
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
            self.drop()


class SmtpTransport:
    """A pool of ``pool_size`` connections; ``send`` may be called from that many threads at once."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self.concurrency = max(1, config.pool_size)
        self._idle: queue.LifoQueue[SmtpConnection] = queue.LifoQueue()
        self._all: list[SmtpConnection] = []
        self._lock = threading.Lock()

    @property
    def where(self) -> str:
        return f"{self.config.host}:{self.config.port}"

    def _checkout(self) -> SmtpConnection:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if len(self._all) < self.concurrency:
                connection = SmtpConnection(self.config)
                self._all.append(connection)
                return connection
        return self._idle.get()

    def send(self, envelope: Envelope, message: bytes) -> SendResult:
        connection = self._checkout()
        try:
            return connection.send(envelope, message)
        finally:
            self._idle.put(connection)

    @property
    def connections(self) -> int:
        """Connections opened so far (for tests and the summary)."""
        return len(self._all)

    def close(self) -> None:
        with self._lock:
            connections, self._all = self._all, []
        for connection in connections:
            connection.close()
        while not self._idle.empty():
            self._idle.get_nowait()
