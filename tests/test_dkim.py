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

from newsletter.bootstrap import App
from newsletter.delivery.dkim import DkimSigner
from newsletter.errors import ConfigError
from subscribers.service import add_subscriber
from tests.conftest import FIXED_NOW, SmtpServer

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


def verifies(message: bytes, record: bytes) -> bool:
    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"news._domainkey.example.com."
        return record

    return bool(dkim.verify(message, dnsfunc=dns))


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
    app.sources.fetch(now=FIXED_NOW)
    with app.database.transaction() as session:
        for number in range(3):
            add_subscriber(session, f"reader{number}@example.org", confirmed=True)
    app.sending.send(edition_date=EDITION, now=FIXED_NOW, clock=lambda: FIXED_NOW)
    assert len(smtp_server.messages) == 3
    for received in smtp_server.messages:
        assert received.data.startswith(b"DKIM-Signature:")
        assert re.search(rb"d=example\.com;", received.data)
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
