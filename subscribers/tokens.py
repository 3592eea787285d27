"""Signed tokens for the links in every mail (unsubscribe, preferences) and for confirmation.

A token names one subscriber and one purpose, and is signed with HMAC (itsdangerous) under the secret
key, so it cannot be forged or reused for another purpose. Unsubscribe and preference tokens never
expire (an old mail must still let its reader leave); confirmation tokens do.
"""

from __future__ import annotations

from itsdangerous import BadSignature, SignatureExpired, URLSafeSerializer, URLSafeTimedSerializer

from subscribers.errors import BadToken

UNSUBSCRIBE = "unsubscribe"
PREFERENCES = "preferences"
CONFIRM = "confirm"


class TokenSigner:
    def __init__(self, secret_key: str) -> None:
        self._secret = secret_key

    def _serializer(self, purpose: str) -> URLSafeSerializer:
        return URLSafeSerializer(self._secret, salt=f"newsletter.{purpose}")

    def sign(self, subscriber_id: int, purpose: str) -> str:
        return self._serializer(purpose).dumps(subscriber_id)

    def verify(self, token: str, purpose: str) -> int:
        try:
            value = self._serializer(purpose).loads(token)
        except BadSignature:
            raise BadToken("this link is not valid; it may have been cut or altered") from None
        if not isinstance(value, int):
            raise BadToken("this link is not valid")
        return value

    def sign_confirmation(self, subscriber_id: int) -> str:
        return URLSafeTimedSerializer(self._secret, salt=f"newsletter.{CONFIRM}").dumps(
            subscriber_id
        )

    def verify_confirmation(self, token: str, *, max_age_seconds: int) -> int:
        serializer = URLSafeTimedSerializer(self._secret, salt=f"newsletter.{CONFIRM}")
        try:
            value = serializer.loads(token, max_age=max_age_seconds)
        except SignatureExpired:
            raise BadToken(
                "this confirmation link has expired", hint="subscribe again to get a new one"
            ) from None
        except BadSignature:
            raise BadToken("this confirmation link is not valid") from None
        if not isinstance(value, int):
            raise BadToken("this confirmation link is not valid")
        return value
