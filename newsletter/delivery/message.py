"""Messages prebuilt once per variant, personalised by joining bytes.

An edition variant becomes a complete RFC 5322 message with slots where the recipient's address,
personal links, Message-ID and Date go. The bodies are quoted-printable; every slot sits between two
soft line breaks (``=\\r\\n``), so a value of any length is inserted as its own encoded lines without
re-encoding the body. Personalising a message is then one ``bytes.join``.

Hand-written on purpose, not a library's message builder: building an ``EmailMessage`` per recipient
(the email package, or any builder over it) re-renders headers and re-encodes every part for each
person. benchmarks/personalise.py measures both on the demo edition (about 60 KiB): a prebuilt
message personalised by byte substitution costs some tens of microseconds, a fresh ``EmailMessage``
per recipient over 10 ms, a ratio of about 250 to 350 on the machines it was run on. At a list of
100,000 that is seconds of CPU instead of tens of minutes. The email package still builds each
variant once (headers, encodings); only the per-recipient step is bytes.
"""

from __future__ import annotations

import html
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from email.header import Header
from email.quoprimime import body_encode
from email.utils import formataddr, parseaddr

from newsletter import personal

CRLF = "\r\n"

# Slot names beyond the body tokens of ``newsletter.personal``.
RECIPIENT = "recipient"
MESSAGE_ID = "message_id"
DATE = "date"
UNSUBSCRIBE_MAILTO = "unsubscribe_mailto"

_TOKEN = re.compile("|".join(re.escape(token) for token in personal.TOKENS))


@dataclass(frozen=True, slots=True)
class Slot:
    """A place in the prebuilt bytes: which value, and how it is encoded there."""

    name: str
    encoding: str  # "header", "qp" or "qp-html"


class PreparedMessage:
    """A message with slots. ``personalise(values)`` returns the wire bytes.

    The bytes have CRLF line ends, end with CRLF, and no line starts with a dot, so they can be
    sent as SMTP DATA without any further processing.
    """

    __slots__ = ("_pieces", "_slots", "_where")

    def __init__(self, pieces: list[bytes | Slot]) -> None:
        merged: list[bytes | Slot] = []
        for piece in pieces:
            if isinstance(piece, bytes) and merged and isinstance(merged[-1], bytes):
                merged[-1] += piece
            else:
                merged.append(piece)
        self._pieces = tuple(merged)
        # Each distinct slot is encoded once per message, then put in every place it occupies.
        self._slots = tuple(dict.fromkeys(piece for piece in merged if isinstance(piece, Slot)))
        index = {slot: number for number, slot in enumerate(self._slots)}
        self._where = tuple(
            (position, index[piece])
            for position, piece in enumerate(merged)
            if isinstance(piece, Slot)
        )

    @property
    def slots(self) -> frozenset[str]:
        return frozenset(slot.name for slot in self._slots)

    def personalise(self, values: Mapping[str, str]) -> bytes:
        encoded = [_encode_value(values[slot.name], slot.encoding) for slot in self._slots]
        out = list(self._pieces)
        for position, number in self._where:
            out[position] = encoded[number]
        return b"".join(out)  # type: ignore[arg-type]  # every Slot was replaced above


def _encode_value(value: str, encoding: str) -> bytes:
    if encoding == "header":
        if any(char in value for char in "\r\n\x00"):
            raise ValueError(f"a header value may not contain a line break: {value!r}")
        return value.encode("utf-8")
    if encoding == "qp-html":
        value = html.escape(value, quote=True)
    return _qp(value).encode("ascii")


def _qp(text: str) -> str:
    """Quoted-printable text that starts a line, with no line starting with a dot.

    A dot at the start of a line is written ``=2E``, so the message never needs SMTP dot-stuffing:
    the prebuilt bytes go to the relay as they are. Lines are wrapped at 74 so that the escape keeps
    them within quoted-printable's 76.
    """
    if _PLAIN.fullmatch(text):
        encoded = _wrapped(text)  # the personal values of every message: addresses and links
    else:
        encoded = body_encode(text.encode("utf-8").decode("latin-1"), maxlinelen=74, eol=CRLF)
    if encoded.startswith("."):
        encoded = "=2E" + encoded[1:]
    return encoded.replace("\r\n.", "\r\n=2E")


#: Printable ASCII but "=", no space: text that quoted-printable leaves as it is, only wrapped.
_PLAIN = re.compile("[!-<>-~]*")
_WRAP = 73  # body_encode's maxlinelen - 1: the characters before each soft line break


def _wrapped(text: str) -> str:
    """What ``body_encode(text, maxlinelen=74, eol=CRLF)`` returns for a text that matches
    :data:`_PLAIN` (tests/test_message.py compares them): the lines of 73 characters and a soft
    break, written without the per-character pass."""
    lines = []
    start = 0
    while start <= len(text) - 75:
        lines.append(text[start : start + _WRAP] + "=")
        start += _WRAP
    lines.append(text[start:])
    return CRLF.join(lines)


def _encoded_body(text: str, *, html_part: bool) -> list[bytes | Slot]:
    """A body with its tokens as slots, each between soft line breaks."""
    return slotted_body(text, html_part=html_part, slots=_TOKEN)


def slotted_body(text: str, *, html_part: bool, slots: re.Pattern[str]) -> list[bytes | Slot]:
    """A quoted-printable body in which each match of ``slots`` is a :class:`Slot` (a personal
    value filled in per recipient), between soft line breaks so that no value is split."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", CRLF)
    pieces: list[bytes | Slot] = []
    position = 0
    for match in slots.finditer(text):
        pieces.append(_qp(text[position : match.start()]).encode("ascii"))
        pieces.append(b"=\r\n")
        pieces.append(Slot(match.group(0), "qp-html" if html_part else "qp"))
        pieces.append(b"=\r\n")
        position = match.end()
    pieces.append(_qp(text[position:]).encode("ascii"))
    return pieces


def header_line(name: str, value: str) -> bytes:
    """A header line, RFC 2047-encoded and folded when it is not plain ASCII."""
    if any(char in value for char in "\r\n\x00"):
        raise ValueError(f"header {name} may not contain a line break")
    if value.isascii() and len(name) + len(value) < 996:
        return f"{name}: {value}{CRLF}".encode("ascii")
    encoded = Header(value, "utf-8", header_name=name).encode(linesep=CRLF)
    return f"{name}: {encoded}{CRLF}".encode("ascii")


def address_header_line(name: str, address: str) -> bytes:
    """An address header line (From, To), its display name RFC 2047-encoded when need be."""
    display, addr = parseaddr(address)
    return f"{name}: {formataddr((display, addr), charset='utf-8')}{CRLF}".encode("ascii")


def list_unsubscribe(unsubscribe_url: str, token: str, mailto: str | None) -> str:
    """The ``List-Unsubscribe`` value of every list mail: the one-click HTTPS link and, when the
    unsubscribe mailbox is read (``mailto`` set), a mailto: whose subject carries the token."""
    value = f"<{unsubscribe_url}>"
    if mailto:
        value += f", <mailto:{mailto}?subject=unsubscribe%20{token}>"
    return value


@dataclass(frozen=True, slots=True)
class MessageHeaders:
    """The headers every message of an edition shares."""

    sender: str
    subject: str
    list_id: str
    list_name: str
    #: The mailto: unsubscribe address, or None when no mailbox reads it.
    unsubscribe_mailto: str | None


def list_unsubscribe_header_lines(mailto: str | None) -> list[bytes | Slot]:
    """``List-Unsubscribe`` as written by :func:`list_unsubscribe`, with slots for the link and token."""
    url, token = "\x00url\x00", "\x00token\x00"
    line = f"List-Unsubscribe: {list_unsubscribe(url, token, mailto)}{CRLF}"
    pieces: list[bytes | Slot] = []
    for part in re.split("(\x00url\x00|\x00token\x00)", line):
        if part == url:
            pieces.append(Slot(personal.UNSUBSCRIBE_URL, "header"))
        elif part == token:
            pieces.append(Slot(UNSUBSCRIBE_MAILTO, "header"))
        elif part:
            pieces.append(part.encode("ascii"))
    return pieces


def prepare_message(
    headers: MessageHeaders, *, html_body: str | None, text_body: str
) -> PreparedMessage:
    """Prebuild one variant: ``multipart/alternative`` (text and HTML), or text only."""
    pieces: list[bytes | Slot] = [
        address_header_line("From", headers.sender),
        b"To: <",
        Slot(RECIPIENT, "header"),
        b">\r\n",
        header_line("Subject", headers.subject),
        b"Date: ",
        Slot(DATE, "header"),
        b"\r\nMessage-ID: ",
        Slot(MESSAGE_ID, "header"),
        b"\r\n",
        header_line("List-Id", f"{headers.list_name} <{headers.list_id}>"),
        *list_unsubscribe_header_lines(headers.unsubscribe_mailto),
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
        b"Precedence: bulk\r\n",
        b"Auto-Submitted: auto-generated\r\n",
        b"MIME-Version: 1.0\r\n",
    ]
    text_headers = (
        b'Content-Type: text/plain; charset="utf-8"\r\n'
        b"Content-Transfer-Encoding: quoted-printable\r\n"
    )
    if html_body is None:
        if not text_body.endswith("\n"):
            text_body += "\n"
        pieces += [text_headers, b"\r\n", *_encoded_body(text_body, html_part=False)]
        return PreparedMessage(pieces)
    boundary = f"=_nl_{secrets.token_hex(12)}".encode("ascii")
    pieces += [
        b'Content-Type: multipart/alternative; boundary="' + boundary + b'"\r\n',
        b"\r\n",
        b"This is a multi-part message in MIME format.\r\n",
        b"--" + boundary + b"\r\n",
        text_headers,
        b"\r\n",
        *_encoded_body(text_body, html_part=False),
        b"\r\n--" + boundary + b"\r\n",
        b'Content-Type: text/html; charset="utf-8"\r\n'
        b"Content-Transfer-Encoding: quoted-printable\r\n",
        b"\r\n",
        *_encoded_body(html_body, html_part=True),
        b"\r\n--" + boundary + b"--\r\n",
    ]
    return PreparedMessage(pieces)
