"""The personal links' tokens are itsdangerous' tokens to the byte: signed by the fast path of
:meth:`TokenSigner.sign`, read by itsdangerous (and the other way round), for every purpose, with
and without a link key, after a key rotation, and with payloads that compress."""

from __future__ import annotations

import random
import string

import pytest
from itsdangerous import URLSafeSerializer

from subscribers.errors import BadToken
from subscribers.tokens import PREFERENCES, UNSUBSCRIBE, TokenSigner


def _reference(secret: list[str], purpose: str, payload: object) -> str:
    return URLSafeSerializer(secret, salt=f"newsletter.{purpose}").dumps(payload)


@pytest.mark.parametrize("purpose", [UNSUBSCRIBE, PREFERENCES, "other"])
def test_tokens_equal_itsdangerous(purpose: str) -> None:
    rng = random.Random(12)
    secret = "s3cret-key-ünïcode"
    signer = TokenSigner(secret, fallbacks=["an-old-key"])
    for _ in range(300):
        subscriber_id = rng.choice([1, 7, rng.randrange(10**12)])
        key = rng.choice(
            [
                None,
                "".join(rng.choices(string.ascii_letters + string.digits, k=22)),
                "a" * rng.randrange(1, 200),  # compresses: the "." prefix
                "ključ-é",
                'quote" back\\\\ line\n \x01 \u2028',
            ]
        )
        payload: object = subscriber_id if key is None else [subscriber_id, key]
        token = signer.sign(subscriber_id, purpose, key=key)
        assert token == _reference(["an-old-key", secret], purpose, payload)
        claim = signer.read(token, purpose)
        assert (claim.subscriber_id, claim.key) == (subscriber_id, key)


def test_a_token_is_bound_to_its_purpose_and_key() -> None:
    signer = TokenSigner("k1")
    token = signer.sign(5, UNSUBSCRIBE, key="abc")
    with pytest.raises(BadToken):
        signer.read(token, PREFERENCES)
    with pytest.raises(BadToken):
        TokenSigner("k2").read(token, UNSUBSCRIBE)
    assert TokenSigner("k2", fallbacks=["k1"]).read(token, UNSUBSCRIBE).subscriber_id == 5
    # signed after a rotation: with the new key, which the old signer does not accept
    rotated = TokenSigner("k2", fallbacks=["k1"]).sign(5, UNSUBSCRIBE, key="abc")
    assert TokenSigner("k2").read(rotated, UNSUBSCRIBE).key == "abc"
    with pytest.raises(BadToken):
        TokenSigner("k1").read(rotated, UNSUBSCRIBE)
