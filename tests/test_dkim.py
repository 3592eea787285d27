"""DKIM: signed messages verify against the published key, through the real send path."""

from __future__ import annotations

import base64
import re
import subprocess
from collections.abc import Callable
from datetime import date
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from newsletter.bootstrap import App
from newsletter.delivery.dkim import DkimSigner, DkimSigners, canonical_body, canonical_header
from newsletter.errors import ConfigError
from subscribers.service import add_subscriber
from tests.conftest import FIXED_NOW, SmtpServer, free_port

EDITION = date(2026, 11, 24)


@pytest.fixture(scope="module")
def rsa_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    folder = tmp_path_factory.mktemp("dkim")
    key = folder / "dkim.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    public = subprocess.run(
        ["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    return key, record


@pytest.fixture(scope="module")
def ed_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """An Ed25519 key in dkimpy's format (the base64 raw key) and its DNS record (RFC 8463)."""
    key = ed25519.Ed25519PrivateKey.generate()
    raw = key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    path = tmp_path_factory.mktemp("dkim-ed") / "ed.key"
    path.write_bytes(base64.b64encode(raw) + b"\n")
    return path, b"v=DKIM1; k=ed25519; p=" + base64.b64encode(public)


def verifies(message: bytes, record: bytes, *, selector: bytes = b"news", index: int = 0) -> bool:
    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == selector + b"._domainkey.example.com."
        return record

    try:
        return bool(dkim.DKIM(message).verify(idx=index, dnsfunc=dns))
    except dkim.DKIMException:
        return False


def send_three(app: App) -> None:
    app.sources.fetch(now=FIXED_NOW)
    with app.database.transaction() as session:
        for number in range(3):
            add_subscriber(session, f"reader{number}@example.org", confirmed=True)
    app.sending.send(edition_date=EDITION, now=FIXED_NOW, clock=lambda: FIXED_NOW)


def test_messages_sent_over_smtp_carry_a_valid_signature(
    app_factory: Callable[..., App],
    sqlite_url: str,
    smtp_server: SmtpServer,
    rsa_key: tuple[Path, bytes],
) -> None:
    key, record = rsa_key
    app = app_factory(
        database_url=sqlite_url,
        transport="smtp",
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
        dkim_private_key_file=key,
        dkim_selector="news",
    )
    send_three(app)
    assert len(smtp_server.messages) == 3
    for received in smtp_server.messages:
        assert received.data.startswith(b"DKIM-Signature:")
        assert re.search(rb"d=example\.com;", received.data)
        assert b"c=relaxed/simple;" in received.data
        assert verifies(received.data, record)
        tampered = received.data.replace(b"BTC $63,957", b"BTC $99,999", 1)
        assert not verifies(tampered, record)


def test_an_unreadable_or_broken_key_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the DKIM private key"):
        DkimSigner.from_file(
            domain="example.com", selector="news", key_file=tmp_path / "missing.pem"
        )
    broken = tmp_path / "broken.pem"
    broken.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ConfigError, match="cannot sign"):
        DkimSigner.from_file(domain="example.com", selector="news", key_file=broken)


@pytest.mark.parametrize(
    "canonicalization", ["relaxed/simple", "relaxed/relaxed", "simple/simple", "simple/relaxed"]
)
def test_every_canonicalisation_verifies_over_smtp(
    app_factory: Callable[..., App],
    sqlite_url: str,
    smtp_server: SmtpServer,
    rsa_key: tuple[Path, bytes],
    canonicalization: str,
) -> None:
    key, record = rsa_key
    app = app_factory(
        database_url=sqlite_url,
        transport="smtp",
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
        dkim_private_key_file=key,
        dkim_selector="news",
        dkim_canonicalization=canonicalization,
    )
    send_three(app)
    assert len(smtp_server.messages) == 3
    for received in smtp_server.messages:
        assert f"c={canonicalization};".encode() in received.data
        assert verifies(received.data, record)


def test_rsa_and_ed25519_sign_side_by_side_and_both_verify_over_smtp(
    app_factory: Callable[..., App],
    sqlite_url: str,
    smtp_server: SmtpServer,
    rsa_key: tuple[Path, bytes],
    ed_key: tuple[Path, bytes],
) -> None:
    key, rsa_record = rsa_key
    ed_file, ed_record = ed_key
    app = app_factory(
        database_url=sqlite_url,
        transport="smtp",
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
        dkim_private_key_file=key,
        dkim_selector="news",
        dkim_ed25519_private_key_file=ed_file,
        dkim_ed25519_selector="ed",
    )
    send_three(app)
    assert len(smtp_server.messages) == 3
    for received in smtp_server.messages:
        assert received.data.count(b"DKIM-Signature:") == 2
        assert b"a=rsa-sha256;" in received.data and b"a=ed25519-sha256;" in received.data
        assert verifies(received.data, rsa_record, index=0)
        assert verifies(received.data, ed_record, selector=b"ed", index=1)
        tampered = received.data.replace(b"BTC $63,957", b"BTC $99,999", 1)
        assert not verifies(tampered, ed_record, selector=b"ed", index=1)


def test_the_ed25519_key_needs_its_own_selector(
    app_factory: Callable[..., App],
    sqlite_url: str,
    rsa_key: tuple[Path, bytes],
    ed_key: tuple[Path, bytes],
) -> None:
    app = app_factory(
        database_url=sqlite_url,
        dkim_private_key_file=rsa_key[0],
        dkim_selector="news",
        dkim_ed25519_private_key_file=ed_key[0],
    )
    with pytest.raises(ConfigError, match="needs its own selector"):
        app.transport()


AWKWARD = [
    pytest.param(
        b"From: A <a@example.com>\r\nTo: b@example.org\r\nSubject:  spaced   out \t\r\n"
        b"  and folded\r\nX-Other: kept\r\n\r\nline with trailing space \t \r\n\r\n"
        b"  inner   runs\tof\t\twhitespace\r\n\r\n\r\n",
        id="whitespace and folding",
    ),
    pytest.param(b"From: a@example.com\r\nSubject: empty\r\n\r\n", id="empty body"),
    pytest.param(b"From: a@example.com\r\nSubject: no end\r\n\r\nlast line", id="no final CRLF"),
    pytest.param(b"From: a@example.com\nSubject: bare\n\nbare LF\nlines\n", id="bare LF"),
    pytest.param(
        b"FROM: a@example.com\r\nsubject:x\r\nSubject: second\r\n\r\n.dot\r\n",
        id="names in other cases, a repeated header",
    ),
]


@pytest.mark.parametrize("message", AWKWARD)
@pytest.mark.parametrize("header", ["relaxed", "simple"])
@pytest.mark.parametrize("body", ["relaxed", "simple"])
def test_awkward_messages_verify_with_dkimpy(
    rsa_key: tuple[Path, bytes],
    ed_key: tuple[Path, bytes],
    message: bytes,
    header: str,
    body: str,
) -> None:
    key, rsa_record = rsa_key
    ed_file, ed_record = ed_key
    canonicalize = (header, body)
    rsa = DkimSigner.from_file(
        domain="example.com",
        selector="news",
        key_file=key,
        canonicalize=canonicalize,  # type: ignore[arg-type]
    )
    ed = DkimSigner.from_file(
        domain="example.com",
        selector="ed",
        key_file=ed_file,
        algorithm="ed25519-sha256",
        canonicalize=canonicalize,  # type: ignore[arg-type]
    )
    assert verifies(rsa.sign(message), rsa_record)
    both = DkimSigners([rsa, ed]).sign(message)
    assert verifies(both, rsa_record, index=0)
    assert verifies(both, ed_record, selector=b"ed", index=1)


def test_canonical_forms_follow_rfc_6376() -> None:
    # The examples of RFC 6376 section 3.4.5.
    assert canonical_header(b"A: X", "relaxed") == b"a:X\r\n"
    assert canonical_header(b"B : Y\t\r\n\tZ  ", "relaxed") == b"b:Y Z\r\n"
    assert canonical_header(b"B : Y\t\r\n\tZ  ", "simple") == b"B : Y\t\r\n\tZ  \r\n"
    body = b" C \r\nD \t E\r\n\r\n\r\n"
    assert canonical_body(body, "relaxed") == b" C\r\nD E\r\n"
    assert canonical_body(body, "simple") == b" C \r\nD \t E\r\n"
    assert canonical_body(b"", "simple") == b"\r\n"
    assert canonical_body(b"", "relaxed") == b""


def test_an_ed25519_key_in_pem_and_a_weak_rsa_key(tmp_path: Path) -> None:
    pem = tmp_path / "ed.pem"
    pem.write_bytes(
        ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    signer = DkimSigner.from_file(
        domain="example.com", selector="ed", key_file=pem, algorithm="ed25519-sha256"
    )
    assert signer.sign(b"From: a@example.com\r\n\r\nhi\r\n").startswith(b"DKIM-Signature:")
    weak = tmp_path / "weak.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(weak), "512"], check=True, capture_output=True)
    with pytest.raises(ConfigError, match="512 bits"):
        DkimSigner.from_file(domain="example.com", selector="news", key_file=weak)
    with pytest.raises(ConfigError, match="needs an RSA key"):
        DkimSigner.from_file(domain="example.com", selector="news", key_file=pem)


def test_signed_once_and_still_valid_when_the_backup_relay_carries_the_send(
    app_factory: Callable[..., App],
    sqlite_url: str,
    smtp_server: SmtpServer,
    rsa_key: tuple[Path, bytes],
) -> None:
    key, record = rsa_key
    down = free_port()
    app = app_factory(
        database_url=sqlite_url,
        transport="smtp",
        relays=[
            {"host": "127.0.0.1", "port": down, "priority": 0},
            {"host": smtp_server.host, "port": smtp_server.port, "priority": 1},
        ],
        dkim_private_key_file=key,
        dkim_selector="news",
    )
    send_three(app)
    assert len(smtp_server.messages) == 3
    for received in smtp_server.messages:
        assert received.data.count(b"DKIM-Signature:") == 1
        assert verifies(received.data, record)
