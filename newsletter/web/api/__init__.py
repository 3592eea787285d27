"""The admin API under ``/api``: subscribers, privacy requests, editions, stats, SMTP relays,
sponsors, webhook endpoints. Bearer token auth.

Every call needs ``Authorization: Bearer $NEWSLETTER_ADMIN_TOKEN``; without the setting the API is off
(401 to everything). Errors are JSON ``{"error": ..., "hint": ...}`` with a status that says what
kind of problem it is (see :mod:`newsletter.web.errors`). One module a concern: :mod:`.subscribers`,
:mod:`.coins`, :mod:`.privacy`, :mod:`.stats`, :mod:`.editions`, :mod:`.relays`, :mod:`.sponsors`,
:mod:`.webhook_endpoints`; the bodies are in :mod:`.schemas`, the token check in :mod:`.auth`.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from newsletter.web.api import (
    coins,
    editions,
    privacy,
    relays,
    sponsors,
    stats,
    subscribers,
    webhook_endpoints,
)
from newsletter.web.api.auth import require_admin
from newsletter.web.api.schemas import Problem

router = APIRouter(
    prefix="/api",
    tags=["admin"],
    dependencies=[Depends(require_admin)],
    responses={401: {"model": Problem, "description": "No or a wrong bearer token."}},
)
for part in (subscribers, coins, privacy, stats, editions, relays, sponsors, webhook_endpoints):
    router.include_router(part.router)

__all__ = ["router"]
