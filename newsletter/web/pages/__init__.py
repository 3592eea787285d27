"""The subscriber's pages: subscribe, confirm, preferences, unsubscribe (one click) and come back.

Every GET only reads; each change is a POST. Forms carry a CSRF token, except the one-click
unsubscribe, whose signed URL is the proof (RFC 8058: a mail client POSTs it with no cookie).
One module a flow; each handler parses the request, calls one function of
:mod:`newsletter.services.subscriptions` and presents its result.
"""

from __future__ import annotations

from fastapi import APIRouter

from newsletter.web.pages import confirm, link_help, preferences, subscribe, unsubscribe

router = APIRouter()
for part in (subscribe, confirm, preferences, unsubscribe, link_help):
    router.include_router(part.router)

__all__ = ["router"]
