"""What the subscriber's pages share: form field types, OpenAPI statuses, the common answers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Form, Request
from fastapi.responses import HTMLResponse

from newsletter.web.state import WebState
from subscribers.tokens import PREFERENCES, LinkClaim

PAGE_STATUSES = {
    200: "A page.",
    400: "A link that does not work, or a field with a line break.",
    403: "The form's CSRF token is missing or stale; the page asks again.",
    404: "The subscriber is no longer on the list.",
    409: "The address cannot be added back.",
    410: "The link has expired or was used already.",
    422: "The form could not be used; the page says why.",
    429: "Too many attempts; see Retry-After.",
}


def page_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses of a page: HTML, with the statuses it can answer."""
    return {
        code: {"content": {"text/html": {}}, "description": PAGE_STATUSES[code]}
        for code in (200, *codes)
    }


HTML = page_responses()

Text = Annotated[str, Form(max_length=400)]
Short = Annotated[str, Form(max_length=100)]


def link_of(state: WebState, token: str, purpose: str) -> LinkClaim:
    """Whose link this is (its key is checked against the row by ``subscribers.links.holder``)."""
    return state.signer.read(token, purpose)


def bad_link(state: WebState, request: Request) -> HTMLResponse:
    return state.message(
        request,
        status=400,
        title="This link does not work",
        text="The link may have been cut or altered on its way. "
        "Use the link at the bottom of any edition you received.",
    )


def gone(state: WebState, request: Request) -> HTMLResponse:
    return state.message(
        request,
        status=404,
        title="This address is not on the list",
        text="It may have been removed. You can subscribe again on the home page.",
    )


def confirmed_page(
    state: WebState, request: Request, link: LinkClaim, *, fresh: bool
) -> HTMLResponse:
    token = state.signer.sign(link.subscriber_id, PREFERENCES, key=link.key)
    return state.page(
        request,
        "confirmed.html.j2",
        title="You are subscribed" if fresh else "You are already subscribed",
        fresh=fresh,
        preferences_url=state.links.preferences(token),
    )


def already_confirmed_page(state: WebState, request: Request) -> HTMLResponse:
    """A used confirmation link may be in anyone's hands (a forwarded mail): no personal link."""
    return state.page(
        request,
        "confirmed.html.j2",
        title="You are already subscribed",
        fresh=False,
        preferences_url=None,
    )
