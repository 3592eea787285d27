"""Prebuilt messages: personalised bytes parse as the same content with the values filled in."""

from __future__ import annotations

import email
import email.policy
import html
import quopri
import random
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter import personal
from newsletter.delivery.message import (
    DATE,
    MESSAGE_ID,
    RECIPIENT,
    UNSUBSCRIBE_MAILTO,
    MessageHeaders,
    prepare_message,
)

HEADERS = MessageHeaders(
    sender="Daily Crypto Insights <digest@example.com>",
    subject="BTC $63,957 (+0.6%) · 8 stories · Tue 24 Nov",
    list_id="daily.example.com",
    list_name="Daily Crypto Insights",
    unsubscribe_mailto="unsubscribe@example.com",
)
HTML = (
    "<html><body><p>Hello "
    + personal.EMAIL
    + " — Zürich ▲ 0.6%</p>"
    + "<p>"
    + "long line " * 40
    + "</p>\n"
    + '<a href="'
    + personal.UNSUBSCRIBE_URL
    + '">Unsubscribe</a> '
    + '<a href="'
    + personal.PREFERENCES_URL
    + '">Preferences</a>\n'
    + ".a line that starts with a dot\ntrailing spaces   \n</body></html>\n"
)
TEXT = "Hi " + personal.EMAIL + "\nUnsubscribe: " + personal.UNSUBSCRIBE_URL + "\n\u00a0€ ▼\n"


def values(recipient: str, url: str) -> dict[str, str]:
    return {
        RECIPIENT: recipient,
        DATE: "Tue, 24 Nov 2026 07:00:00 +0000",
        MESSAGE_ID: "<20261124.7.abc@example.com>",
        UNSUBSCRIBE_MAILTO: "tok",
        personal.EMAIL: recipient,
        personal.UNSUBSCRIBE_URL: url,
        personal.PREFERENCES_URL: url.replace("unsubscribe", "preferences"),
    }


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def body(message: EmailMessage, kind: str) -> str:
    part = message.get_body((kind,))
    assert part is not None
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def test_headers_of_a_personalised_message() -> None:
    prepared = prepare_message(HEADERS, html_body=HTML, text_body=TEXT)
    raw = prepared.personalise(values("reader@example.com", "https://news.example/unsubscribe/T1"))
    message = parse(raw)
    assert message["To"].addresses[0].addr_spec == "reader@example.com"
    assert message["Subject"] == HEADERS.subject
    assert message["From"] == HEADERS.sender
    assert message["Message-ID"] == "<20261124.7.abc@example.com>"
    assert message["List-Id"] == "Daily Crypto Insights <daily.example.com>"
    assert "<https://news.example/unsubscribe/T1>" in message["List-Unsubscribe"]
    assert (
        "<mailto:unsubscribe@example.com?subject=unsubscribe%20tok>" in message["List-Unsubscribe"]
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Precedence"] == "bulk"
    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]
    assert not message.defects


def test_lines_stay_within_rfc_limits() -> None:
    prepared = prepare_message(HEADERS, html_body=HTML, text_body=TEXT)
    raw = prepared.personalise(
        values("reader@example.com", "https://news.example/unsubscribe/" + "T" * 300)
    )
    body_lines = raw.split(b"\r\n\r\n", 1)[1].split(b"\r\n")
    assert max(len(line) for line in body_lines) <= 76
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert raw.isascii()


def test_text_only_variant() -> None:
    prepared = prepare_message(HEADERS, html_body=None, text_body=TEXT)
    message = parse(
        prepared.personalise(values("a@example.com", "https://n.example/unsubscribe/x"))
    )
    assert message.get_content_type() == "text/plain"
    assert body(message, "plain") == personal.fill(
        TEXT, values("a@example.com", "https://n.example/unsubscribe/x")
    )


def test_header_values_cannot_inject_headers() -> None:
    prepared = prepare_message(HEADERS, html_body=HTML, text_body=TEXT)
    with pytest.raises(ValueError, match="line break"):
        prepared.personalise(
            values("a@example.com\r\nBcc: victim@example.org", "https://n.example/u")
        )


local_parts = st.text(
    alphabet=st.characters(codec="ascii", categories=("L", "N"), include_characters="._+-&'="),
    min_size=1,
    max_size=40,
)
urls = st.text(
    alphabet=st.characters(codec="ascii", categories=("L", "N"), include_characters="-_.~/=?&%."),
    min_size=1,
    max_size=300,
).map(lambda tail: "https://news.example/unsubscribe/" + tail)


@settings(max_examples=150, deadline=None)
@given(local=local_parts, url=urls)
def test_personalised_bodies_decode_to_the_filled_template(local: str, url: str) -> None:
    recipient = f"{local}@example.com"
    filled = values(recipient, url)
    prepared = prepare_message(HEADERS, html_body=HTML, text_body=TEXT)
    raw = prepared.personalise(filled)
    assert b"\r\n." not in raw  # ready for SMTP DATA without dot-stuffing
    assert raw.endswith(b"\r\n")
    assert max(len(line) for line in raw.split(b"\r\n\r\n", 1)[1].split(b"\r\n")) <= 76
    message = parse(raw)
    assert body(message, "plain") == personal.fill(TEXT, filled)
    escaped = {key: html.escape(value, quote=True) for key, value in filled.items()}
    assert body(message, "html") == personal.fill(HTML, escaped)


def test_plain_values_are_wrapped_as_body_encode_wraps_them() -> None:
    """The shortcut for personal values (printable ASCII, no "=" and no space) gives
    quoted-printable's own result to the character, at every length around the wrap."""
    from email.quoprimime import body_encode

    from newsletter.delivery.message import _PLAIN, _qp, _wrapped

    rng = random.Random(5)
    alphabet = "".join(chr(code) for code in range(33, 127) if chr(code) != "=")
    for length in [*range(0, 230), 500, 1000]:
        for _ in range(3):
            text = "".join(rng.choices(alphabet, k=length))
            if length and rng.random() < 0.3:
                text = "." + text[1:]  # a leading dot: escaped by _qp either way
            assert _PLAIN.fullmatch(text)
            assert _wrapped(text) == body_encode(text, maxlinelen=74, eol="\r\n")
            encoded = _qp(text)
            assert quopri.decodestring(encoded.encode("ascii")).decode("ascii") == text
            assert all(len(line) <= 76 for line in encoded.split("\r\n"))
            assert not any(line.startswith(".") for line in encoded.split("\r\n"))
    for text in ["a=b", "a b", "tab\there", "é", "line\nbreak", "x" * 80 + " "]:
        assert not _PLAIN.fullmatch(text)
