"""The admin API's bearer token: ``Authorization: Bearer $NEWSLETTER_ADMIN_TOKEN``.

Without the setting the API is off (401 to everything).
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from newsletter.web.state import State, WebState

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="AdminToken",
    description="The value of NEWSLETTER_ADMIN_TOKEN.",
)


def require_admin(
    state: State,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    expected = state.settings.admin_token
    if expected is None or not expected.get_secret_value():
        raise HTTPException(
            401,
            "the admin API is off: set NEWSLETTER_ADMIN_TOKEN to turn it on",
            headers={"WWW-Authenticate": "Bearer"},
        )
    given = credentials.credentials if credentials is not None else ""
    if not hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.get_secret_value().encode()
    ):
        raise HTTPException(
            401,
            "missing or wrong bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )


def is_admin(state: WebState, credentials: HTTPAuthorizationCredentials | None) -> bool:
    """Whether ``credentials`` pass :func:`require_admin` (for pages that show more to the admin)."""
    try:
        require_admin(state, credentials)
    except HTTPException:
        return False
    return True
