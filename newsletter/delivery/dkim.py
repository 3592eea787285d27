"""DKIM signing (RFC 6376, RFC 8463): every message signed just before it leaves, as the body is personal.

The canonicalisation and the signature header are built here, following RFC 6376 section 3.4 to the
letter; the private-key operation goes through OpenSSL (``cryptography``), which signs RSA-2048 in
about a millisecond where dkimpy's pure-Python RSA takes ten. Everything that is the same for every
message is prepared once per signer: the key object, the ``h=`` list and the fixed tags. Per message
there remain one pass over the headers, one SHA-256 of the canonical body and one signature per key
(see ``benchmarks/signing.py`` for the figures). dkimpy verifies what is signed here, in the tests.

Several keys (RSA and Ed25519 side by side, RFC 8463 section 1) sign the same message with
:class:`DkimSigners`: the body is canonicalised and hashed once for all of them.

Signing runs in the sending threads, just before the bytes go to the transport; it spreads over
worker processes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Protocol

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

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

Canonicalization = Literal["relaxed", "simple"]
CANONICALIZATIONS: tuple[Canonicalization, ...] = ("relaxed", "simple")
#: RFC 8301 section 3.2: verifiers must not accept RSA keys under 1024 bits.
MIN_RSA_BITS = 1024

_FIELD_BREAK = re.compile(rb"\r\n(?![ \t])")
_WSP = re.compile(rb"[ \t]+")
_WSP_AT_EOL = re.compile(rb" \r\n")
_BARE_LINE_END = re.compile(rb"\r?\n")


class Signer(Protocol):
    def sign(self, message: bytes, *, crlf: bool = False) -> bytes: ...


def _crlf(message: bytes) -> bytes:
    """Every line ending as CRLF, so that what is signed is what goes on the wire.

    As many CRs as LFs (two byte counts, far cheaper than a search for CRLF) is how the prebuilt
    messages always are; anything else has a bare LF to turn into CRLF.
    """
    if message.count(b"\n") != message.count(b"\r"):
        return _BARE_LINE_END.sub(b"\r\n", message)
    return message


def split_message(message: bytes) -> tuple[list[bytes], bytes]:
    """The header fields (each as it stands, folding kept, no final CRLF) and the body."""
    end = message.find(b"\r\n\r\n")
    if end < 0:
        block, body = message.removesuffix(b"\r\n"), b""
    else:
        block, body = message[:end], message[end + 4 :]
    return (_FIELD_BREAK.split(block) if block else []), body


def canonical_body(body: bytes, method: Canonicalization) -> bytes:
    """RFC 6376 sections 3.4.3 (simple) and 3.4.4 (relaxed)."""
    if method == "simple":
        return body.rstrip(b"\r\n") + b"\r\n"
    if not body:
        return b""
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    relaxed = _WSP_AT_EOL.sub(b"\r\n", _WSP.sub(b" ", body)).rstrip(b"\r\n")
    return relaxed + b"\r\n" if relaxed else b""


def canonical_header(field: bytes, method: Canonicalization) -> bytes:
    """RFC 6376 sections 3.4.1 (simple) and 3.4.2 (relaxed), with its CRLF."""
    if method == "simple":
        return field + b"\r\n"
    name, _, value = field.partition(b":")
    value = _WSP.sub(b" ", value.replace(b"\r\n", b"")).strip(b" ")
    return name.rstrip(b" \t").lower() + b":" + value + b"\r\n"


def _pick(fields: list[bytes], names: Sequence[bytes]) -> list[bytes]:
    """For each name of ``h=``, the last instance not yet used (RFC 6376 section 5.4.2)."""
    by_name: dict[bytes, list[bytes]] = {}
    wanted = set(names)
    for field in fields:
        name = field.partition(b":")[0].rstrip(b" \t").lower()
        if name in wanted:
            by_name.setdefault(name, []).append(field)
    picked = []
    for name in names:
        instances = by_name.get(name)
        if instances:
            picked.append(instances.pop())
    return picked


def _load_key(private_key: bytes, algorithm: str) -> rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey:
    if algorithm == "rsa-sha256":
        try:
            key = serialization.load_pem_private_key(private_key, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise ValueError(f"not a PEM private key without a passphrase ({exc})") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("rsa-sha256 needs an RSA key")
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(
                f"an RSA key of {key.key_size} bits is refused by verifiers (RFC 8301)"
            )
        return key
    if algorithm == "ed25519-sha256":
        if private_key.lstrip().startswith(b"-----BEGIN"):
            try:
                pem = serialization.load_pem_private_key(private_key, password=None)
            except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
                raise ValueError(f"not a PEM private key without a passphrase ({exc})") from None
            if not isinstance(pem, ed25519.Ed25519PrivateKey):
                raise ValueError("ed25519-sha256 needs an Ed25519 key")
            return pem
        try:
            seed = base64.b64decode(private_key.strip(), validate=True)
        except binascii.Error:
            raise ValueError("an Ed25519 key is 32 bytes in base64, or PEM") from None
        if len(seed) != 32:
            raise ValueError(f"an Ed25519 key is 32 bytes in base64, not {len(seed)} bytes")
        return ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    raise ValueError(f"unknown DKIM algorithm {algorithm!r}: rsa-sha256 or ed25519-sha256")


class DkimSigner:
    """One key: signs a message and returns it with its DKIM-Signature header in front.

    ``private_key``: PEM for rsa-sha256; for ed25519-sha256 the base64 raw 32-byte key (dkimpy's
    format) or PEM. ``canonicalize``: header and body canonicalisation, (relaxed, simple) by default.
    """

    def __init__(
        self,
        *,
        domain: str,
        selector: str,
        private_key: bytes,
        algorithm: str = "rsa-sha256",
        canonicalize: tuple[Canonicalization, Canonicalization] = ("relaxed", "simple"),
        headers: Sequence[bytes] = SIGNED_HEADERS,
    ) -> None:
        for method in canonicalize:
            if method not in CANONICALIZATIONS:
                raise ValueError(f"unknown canonicalisation {method!r}: relaxed or simple")
        if b"from" not in [name.lower() for name in headers]:
            raise ValueError("the From header must be signed (RFC 6376 section 5.4)")
        self.domain = domain.encode("ascii")
        self.selector = selector.encode("ascii")
        self.algorithm = algorithm.encode("ascii")
        self.header_method, self.body_method = canonicalize
        self.headers = tuple(name.lower() for name in headers)
        self.key = _load_key(private_key, algorithm)
        self._head = b"v=1; a=%s; c=%s/%s; d=%s; s=%s;\r\n\tt=" % (
            self.algorithm,
            self.header_method.encode(),
            self.body_method.encode(),
            self.domain,
            self.selector,
        )
        self._names = b"; h=" + b":".join(self.headers) + b";\r\n\tbh="

    @classmethod
    def from_file(
        cls,
        *,
        domain: str,
        selector: str,
        key_file: Path,
        algorithm: str = "rsa-sha256",
        canonicalize: tuple[Canonicalization, Canonicalization] = ("relaxed", "simple"),
    ) -> DkimSigner:
        try:
            key = key_file.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"cannot read the DKIM private key {key_file}: {exc.strerror}",
                hint="check NEWSLETTER_DKIM_PRIVATE_KEY_FILE",
            ) from None
        try:
            return cls(
                domain=domain,
                selector=selector,
                private_key=key.strip(),
                algorithm=algorithm,
                canonicalize=canonicalize,
            )
        except ValueError as exc:
            raise ConfigError(
                f"the DKIM private key {key_file} cannot sign {algorithm}: {exc}",
                hint="an RSA key: openssl genrsa -out dkim.pem 2048",
            ) from None

    def body_hash(self, body: bytes) -> bytes:
        return base64.b64encode(hashlib.sha256(canonical_body(body, self.body_method)).digest())

    def header(self, fields: list[bytes], body_hash: bytes, now: int) -> bytes:
        """The DKIM-Signature header field, with its CRLF, for these header fields and body hash."""
        value = self._head + str(now).encode() + self._names + body_hash + b";\r\n\tb="
        method = self.header_method
        signed = b"".join(canonical_header(field, method) for field in _pick(fields, self.headers))
        signed += canonical_header(b"DKIM-Signature: " + value, method).removesuffix(b"\r\n")
        if isinstance(self.key, rsa.RSAPrivateKey):
            signature = self.key.sign(signed, padding.PKCS1v15(), hashes.SHA256())
        else:
            signature = self.key.sign(hashlib.sha256(signed).digest())
        return b"DKIM-Signature: " + value + base64.b64encode(signature) + b"\r\n"

    def sign(self, message: bytes, *, crlf: bool = False) -> bytes:
        """The message with a DKIM-Signature header in front. ``crlf``: its line ends are known
        to be CRLF already (a prebuilt message), so they are not counted again."""
        if not crlf:
            message = _crlf(message)
        fields, body = split_message(message)
        return self.header(fields, self.body_hash(body), int(time.time())) + message


class DkimSigners:
    """Several keys on one message (RSA and Ed25519, RFC 8463): one signature header each.

    The body is canonicalised and hashed once per canonicalisation, not once per key.
    """

    def __init__(self, signers: Sequence[DkimSigner]) -> None:
        if not signers:
            raise ValueError("no DKIM signer")
        self.signers = tuple(signers)

    def sign(self, message: bytes, *, crlf: bool = False) -> bytes:
        if not crlf:
            message = _crlf(message)
        fields, body = split_message(message)
        now = int(time.time())
        hashes_by_method: dict[str, bytes] = {}
        headers = []
        for signer in self.signers:
            body_hash = hashes_by_method.get(signer.body_method)
            if body_hash is None:
                body_hash = hashes_by_method[signer.body_method] = signer.body_hash(body)
            headers.append(signer.header(fields, body_hash, now))
        return b"".join(headers) + message


class DkimSigningTransport:
    """Signs each message, then hands it to the transport underneath."""

    def __init__(self, inner: Transport, signer: Signer) -> None:
        self.inner = inner
        self.signer = signer
        self.concurrency = inner.concurrency

    def send(self, envelope: Envelope, message: bytes) -> SendResult:
        # A wire-ready message (prebuilt) has CRLF line ends only: two passes over it spared.
        return self.inner.send(envelope, self.signer.sign(message, crlf=envelope.wire_ready))

    def close(self) -> None:
        self.inner.close()
