"""DKIM signing (dkimpy): every message signed just before it leaves, as the body is personal.

Signing hashes the whole message and makes one private-key signature, so its cost grows with the
message size and the key: see ``benchmarks/signing.py`` for the figures. It is done in the sending
threads, so it spreads over the SMTP pool and over worker processes.
"""

from __future__ import annotations

from pathlib import Path

import dkim

from newsletter.delivery.transports import Envelope, SendResult, Transport
from newsletter.errors import ConfigError

SIGNED_HEADERS = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"list-id",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
    b"mime-version",
    b"content-type",
)


class DkimSigner:
    def __init__(
        self, *, domain: str, selector: str, private_key: bytes, algorithm: str = "rsa-sha256"
    ) -> None:
        """``private_key``: PEM for rsa-sha256; the base64 raw key for ed25519-sha256 (RFC 8463)."""
        self.domain = domain.encode("ascii")
        self.selector = selector.encode("ascii")
        self.private_key = private_key
        self.algorithm = algorithm.encode("ascii")

    @classmethod
    def from_file(
        cls, *, domain: str, selector: str, key_file: Path, algorithm: str = "rsa-sha256"
    ) -> DkimSigner:
        try:
            key = key_file.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"cannot read the DKIM private key {key_file}: {exc.strerror}",
                hint="check NEWSLETTER_DKIM_PRIVATE_KEY_FILE",
            ) from None
        signer = cls(domain=domain, selector=selector, private_key=key.strip(), algorithm=algorithm)
        try:
            signer.sign(b"From: check@" + signer.domain + b"\r\nSubject: key check\r\n\r\nok\r\n")
        except (dkim.DKIMException, ValueError) as exc:  # binascii.Error is a ValueError
            raise ConfigError(f"the DKIM private key {key_file} cannot sign: {exc}") from None
        return signer

    def sign(self, message: bytes) -> bytes:
        """The message with a DKIM-Signature header in front."""
        header: bytes = dkim.sign(
            message,
            self.selector,
            self.domain,
            self.private_key,
            canonicalize=(b"relaxed", b"simple"),
            signature_algorithm=self.algorithm,
            include_headers=list(SIGNED_HEADERS),
        )
        return header + message


class DkimSigningTransport:
    """Signs each message, then hands it to the transport underneath."""

    def __init__(self, inner: Transport, signer: DkimSigner) -> None:
        self.inner = inner
        self.signer = signer
        self.concurrency = inner.concurrency

    def send(self, envelope: Envelope, message: bytes) -> SendResult:
        return self.inner.send(envelope, self.signer.sign(message))

    def close(self) -> None:
        self.inner.close()
