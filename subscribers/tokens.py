"""Signed tokens for the links in every mail (unsubscribe, preferences) and for confirmation.

A token names one subscriber and one purpose, and is signed with HMAC (itsdangerous) under the secret
key, so it cannot be forged or reused for another purpose. It also carries the subscriber's random
link key (see :mod:`subscribers.links`), which dies with the row: the link of an erased or deleted
subscriber acts on nobody, even if a later subscriber got the same id. Unsubscribe and preference tokens never
expire (an old mail must still let its reader leave); confirmation tokens do, and carry the nonce the
subscriber holds while pending, which confirming clears: a confirmation link works once. After a key
rotation the old keys still verify (never sign), so the links in mails already delivered keep working.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from json.encoder import encode_basestring as _json_str

from itsdangerous import (
    BadSignature,
    TimestampSigner,
    URLSafeSerializer,
    URLSafeTimedSerializer,
)

from subscribers.errors import BadToken

UNSUBSCRIBE = "unsubscribe"
PREFERENCES = "preferences"
CONFIRM = "confirm"


@dataclass(frozen=True, slots=True)
class LinkClaim:
    """What a valid personal link says: whose it is, and the link key it was made with (None in links
    made before links carried a key)."""

    subscriber_id: int
    key: str | None


@dataclass(frozen=True, slots=True)
class ConfirmationClaim:
    """What a valid confirmation token says: who, which pending period (nonce), and when it was made."""

    subscriber_id: int
    nonce: str | None
    issued_at: datetime
    key: str | None = None

    @property
    def link(self) -> LinkClaim:
        return LinkClaim(self.subscriber_id, self.key)


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class TokenSigner:
    """Signs with ``secret_key``; verifies with it or any of ``fallbacks`` (keys before a rotation)."""

    def __init__(self, secret_key: str, *, fallbacks: Sequence[str] = ()) -> None:
        # itsdangerous signs with the last key and accepts a signature by any of them.
        self._secret: list[str] = [*fallbacks, secret_key]
        self._macs: dict[str, hmac.HMAC] = {}

    def _serializer(self, purpose: str) -> URLSafeSerializer:
        return URLSafeSerializer(self._secret, salt=f"newsletter.{purpose}")

    def sign(self, subscriber_id: int, purpose: str, *, key: str | None = None) -> str:
        """A personal link's token; with ``key`` (the subscriber's link key) it dies with the row.

        Every message carries two, so this is itsdangerous' ``URLSafeSerializer.dumps`` written
        out with its derived key computed once per purpose: the same token to the byte (compact
        JSON, zlib only when shorter, unpadded URL-safe base64, HMAC-SHA1 under the key derived
        "django-concat", tests/test_token_signing.py compares them), at a fraction of the cost.
        """
        payload: int | list[int | str] = subscriber_id if key is None else [subscriber_id, key]
        if type(subscriber_id) is int and (key is None or type(key) is str):
            # compact JSON of an int, or of [int, str], as json.dumps writes it
            text = str(subscriber_id) if key is None else f"[{subscriber_id},{_json_str(key)}]"
        else:
            text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        data = text.encode("utf-8")
        compressed = zlib.compress(data)
        shorter = len(compressed) < len(data) - 1
        value = b"." + _b64(compressed) if shorter else _b64(data)
        mac = self._macs.get(purpose)
        if mac is None:
            salt = f"newsletter.{purpose}".encode()
            # itsdangerous' default key derivation and HMAC digest, which existing links carry
            secret = self._secret[-1].encode()
            derived = hashlib.sha1(salt + b"signer" + secret).digest()  # noqa: S324
            mac = self._macs[purpose] = hmac.new(derived, digestmod=hashlib.sha1)
        mac = mac.copy()
        mac.update(value)
        return (value + b"." + _b64(mac.digest())).decode("ascii")

    def read(self, token: str, purpose: str) -> LinkClaim:
        """Check a personal link's signature and purpose; the caller checks the key against the row."""
        try:
            value = self._serializer(purpose).loads(token)
        except BadSignature:
            raise BadToken("this link is not valid; it may have been cut or altered") from None
        if _is_id(value):
            return LinkClaim(value, None)
        if isinstance(value, list) and len(value) == 2 and _is_id(value[0]):
            key = value[1]
            if isinstance(key, str):
                return LinkClaim(value[0], key)
        raise BadToken("this link is not valid")

    def verify(self, token: str, purpose: str) -> int:
        """The subscriber id a token names (its key unchecked: act on a row through
        :func:`subscribers.links.holder` with :meth:`read` instead)."""
        return self.read(token, purpose).subscriber_id

    def _timed(self, now: datetime | None = None) -> URLSafeTimedSerializer:
        if now is None:
            return URLSafeTimedSerializer(self._secret, salt=f"newsletter.{CONFIRM}")
        stamp = int(now.timestamp())

        class _SignedAt(TimestampSigner):
            def get_timestamp(self) -> int:
                return stamp

        return URLSafeTimedSerializer(self._secret, salt=f"newsletter.{CONFIRM}", signer=_SignedAt)

    def sign_confirmation(
        self,
        subscriber_id: int,
        *,
        nonce: str | None = None,
        now: datetime | None = None,
        key: str | None = None,
    ) -> str:
        """A confirmation token; with ``nonce`` it is good only while the subscriber holds that nonce,
        with ``key`` only while the row that has that link key exists."""
        payload: int | list[int | str] = subscriber_id if nonce is None else [subscriber_id, nonce]
        if key is not None:
            payload = [subscriber_id, nonce or "", key]
        return self._timed(now).dumps(payload)

    def read_confirmation(
        self, token: str, *, max_age_seconds: int, now: datetime | None = None
    ) -> ConfirmationClaim:
        """Check a confirmation token's signature and age (against ``now``, default the clock)."""
        try:
            value, issued = self._timed().loads(token, return_timestamp=True)
        except BadSignature:
            raise BadToken("this confirmation link is not valid") from None
        issued_at = issued if issued.tzinfo else issued.replace(tzinfo=UTC)
        age = ((now or datetime.now(UTC)) - issued_at).total_seconds()
        if age > max_age_seconds:
            raise BadToken(
                "this confirmation link has expired", hint="subscribe again to get a new one"
            )
        if _is_id(value):
            return ConfirmationClaim(value, None, issued_at)
        if (
            isinstance(value, list)
            and len(value) in (2, 3)
            and _is_id(value[0])
            and all(isinstance(part, str) for part in value[1:])
        ):
            key = value[2] if len(value) == 3 else None
            return ConfirmationClaim(value[0], value[1] or None, issued_at, key)
        raise BadToken("this confirmation link is not valid")

    def verify_confirmation(
        self, token: str, *, max_age_seconds: int, now: datetime | None = None
    ) -> int:
        return self.read_confirmation(token, max_age_seconds=max_age_seconds, now=now).subscriber_id
