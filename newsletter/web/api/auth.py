"""The admin API's bearer token: ``Authorization: Bearer $NEWSLETTER_ADMIN_TOKEN``; and the bounce
webhook's secret, ``NEWSLETTER_WEBHOOK_SECRET``, as a bearer token or a basic-auth password.

Without the setting the API is off (401 to everything), the webhook too (404).
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException
from fastapi.security import (
    HTTPAuthorizationCredentials,
    HTTPBasic,
    HTTPBasicCredentials,
    HTTPBearer,
)

from newsletter.web.state import State, WebState

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="AdminToken",
    description="The value of NEWSLETTER_ADMIN_TOKEN.",
)


webhook_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="WebhookSecret",
    description="The value of NEWSLETTER_WEBHOOK_SECRET.",
)
webhook_basic = HTTPBasic(
    auto_error=False,
    scheme_name="WebhookBasic",
    realm="bounces",
    description="Any user name; the password is the value of NEWSLETTER_WEBHOOK_SECRET.",
)

#: Basic first: Amazon SNS sends the credentials of its URL only when challenged for Basic.
WEBHOOK_CHALLENGE = {"WWW-Authenticate": 'Basic realm="bounces", Bearer'}


async def require_webhook_secret(
    state: State,
    bearer_credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(webhook_bearer)],
    basic_credentials: Annotated[HTTPBasicCredentials | None, Depends(webhook_basic)],
) -> None:
    expected = state.settings.webhook_secret
    if expected is None or not expected.get_secret_value():
        raise HTTPException(
            404, "the bounce webhook is off: set NEWSLETTER_WEBHOOK_SECRET to turn it on"
        )
    if bearer_credentials is not None:
        given = bearer_credentials.credentials
    elif basic_credentials is not None:
        given = basic_credentials.password
    else:
        given = ""
    # compare_digest: the time taken does not tell how much of a guess was right.
    if not hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.get_secret_value().encode()
    ):
        raise HTTPException(
            401,
            "missing or wrong webhook secret: give NEWSLETTER_WEBHOOK_SECRET as a bearer token "
            "or as the password of basic auth",
            headers=WEBHOOK_CHALLENGE,
        )


async def require_admin(
    state: State,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    # async: a plain function as a dependency costs every request a hop to the thread pool.
    check_admin(state, credentials)


def check_admin(state: WebState, credentials: HTTPAuthorizationCredentials | None) -> None:
    """Raise 401 unless ``credentials`` carry the admin token (and the admin API is on)."""
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
    """Whether ``credentials`` pass :func:`check_admin` (for pages that show more to the admin)."""
    try:
        check_admin(state, credentials)
    except HTTPException:
        return False
    return True
