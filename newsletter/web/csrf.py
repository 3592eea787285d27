"""CSRF protection of the forms: a random cookie, and in each form a token derived from it.

The token is an HMAC of the cookie under the secret key, so a page of another site can neither read
nor make one. A POST is accepted when its ``csrf_token`` field matches the cookie it came with and its
``Origin`` (when the browser sends one) is ours. The one-click unsubscribe POST needs none of this:
its signed URL is the proof, and mail clients send no cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

FIELD = "csrf_token"
MAX_AGE = 60 * 60 * 24 * 7


class Csrf:
    def __init__(self, secret: bytes, *, base_url: str) -> None:
        self._secret = secret
        parts = urlsplit(base_url)
        self.secure = parts.scheme == "https"
        # "__Host-" cookies must be Secure, path=/ and host-only: a sibling subdomain cannot set them.
        self.cookie = "__Host-nl_csrf" if self.secure else "nl_csrf"
        self.origin = f"{parts.scheme}://{parts.netloc}".lower()

    def token_for(self, cookie: str) -> str:
        mac = hmac.new(self._secret, f"csrf:{cookie}".encode(), hashlib.sha256)
        return mac.hexdigest()

    def issue(self, request: Request) -> tuple[str, str | None]:
        """The form token for this request, and a new cookie value to set when it has none."""
        cookie = request.cookies.get(self.cookie, "")
        if _plausible(cookie):
            return self.token_for(cookie), None
        fresh = secrets.token_urlsafe(32)
        return self.token_for(fresh), fresh

    def set_cookie(self, response: Response, value: str) -> None:
        response.set_cookie(
            self.cookie,
            value,
            max_age=MAX_AGE,
            path="/",
            secure=self.secure,
            httponly=True,
            samesite="lax",
        )

    def check(self, request: Request, submitted: str | None) -> bool:
        origin = request.headers.get("origin")
        if origin and origin != "null" and not self._same_origin(request, origin):
            return False
        cookie = request.cookies.get(self.cookie, "")
        if not _plausible(cookie) or not submitted:
            return False
        return hmac.compare_digest(self.token_for(cookie), submitted)

    def _same_origin(self, request: Request, origin: str) -> bool:
        origin = origin.lower().rstrip("/")
        if origin == self.origin:
            return True
        host = request.headers.get("host", "")
        return bool(host) and origin in (f"http://{host}".lower(), f"https://{host}".lower())


def _plausible(cookie: str) -> bool:
    return 20 <= len(cookie) <= 100 and cookie.replace("-", "").replace("_", "").isalnum()
