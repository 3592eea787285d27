"""Leaving and coming back: the unsubscribe page, one-click unsubscribe (RFC 8058), resubscribe.

The one-click POST carries no CSRF token: its signed URL is the proof (a mail client POSTs it with
no cookie).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Form, Request
from fastapi.responses import HTMLResponse, Response

from newsletter.services import subscriptions
from newsletter.services.subscriptions import Member
from newsletter.web.pages.common import (
    Short,
    bad_link,
    confirmed_page,
    gone,
    link_of,
    page_responses,
)
from newsletter.web.state import State, WebState
from subscribers import signup
from subscribers.errors import BadToken
from subscribers.tokens import UNSUBSCRIBE, LinkClaim

router = APIRouter(tags=["pages"], default_response_class=HTMLResponse)


def _unsubscribe_page(
    state: WebState,
    request: Request,
    token: str,
    member: Member | None,
    *,
    just_left: bool = False,
    status: int = 200,
    error: str | None = None,
) -> HTMLResponse:
    if member is None:
        return state.page(
            request,
            "unsubscribe.html.j2",
            status=status,
            title="You are not on the list",
            state="unknown",
            token=token,
            email="",
            just_left=False,
            error=error,
        )
    page_state = "subscribed" if member.receiving else member.status.value
    return state.page(
        request,
        "unsubscribe.html.j2",
        status=status,
        title="Unsubscribe" if member.receiving else "You are unsubscribed",
        form=True,
        state=page_state,
        token=token,
        email=member.email,
        just_left=just_left,
        error=error,
    )


@router.get(
    "/unsubscribe/{token}",
    responses=page_responses(400),
    summary="The unsubscribe page (one button)",
)
def unsubscribe_page(token: str, request: Request, state: State) -> Response:
    try:
        link = link_of(state, token, UNSUBSCRIBE)
    except BadToken:
        return bad_link(state, request)
    return _unsubscribe_page(state, request, token, subscriptions.member(state.database, link))


@router.post(
    "/unsubscribe/{token}",
    responses=page_responses(400, 422),
    summary="One-click unsubscribe (RFC 8058): no cookie, no confirmation, idempotent",
)
def unsubscribe(
    token: str,
    request: Request,
    state: State,
    background: BackgroundTasks,
    list_unsubscribe: Annotated[str | None, Form(alias="List-Unsubscribe", max_length=100)] = None,
) -> Response:
    metrics = state.metrics
    try:
        link = link_of(state, token, UNSUBSCRIBE)
    except BadToken:
        metrics.count(metrics.unsubscribes, outcome="bad-token")
        return bad_link(state, request)
    channel = "one-click" if list_unsubscribe == "One-Click" else "post"
    left = subscriptions.leave(
        state.database, link, mails=state.mails, channel=channel, now=state.clock()
    )
    outcome = left.result.outcome
    response = _unsubscribe_page(
        state, request, token, left.member, just_left=outcome is signup.Leave.UNSUBSCRIBED
    )
    metrics.count(metrics.unsubscribes, outcome=outcome.value)
    if left.mail is not None:
        background.add_task(state.outbox.nudge)
    return response


@router.post(
    "/resubscribe/{token}",
    responses=page_responses(400, 403, 404, 409, 422),
    summary="Come back after unsubscribing",
)
def resubscribe(
    token: str,
    request: Request,
    state: State,
    background: BackgroundTasks,
    csrf_token: Short = "",
) -> Response:
    try:
        link = link_of(state, token, UNSUBSCRIBE)
    except BadToken:
        return bad_link(state, request)
    if not state.csrf.check(request, csrf_token):
        return _unsubscribe_page(
            state,
            request,
            token,
            subscriptions.member(state.database, link),
            status=403,
            error="This form had expired. Please press the button again.",
        )
    rejoined = subscriptions.rejoin(
        state.database,
        link,
        settings=state.settings,
        mails=state.mails,
        ip=state.client_ip(request),
        user_agent=request.headers.get("user-agent"),
        now=state.clock(),
    )
    result = rejoined.result
    if result.outcome is signup.Rejoin.UNKNOWN:
        return gone(state, request)
    if result.outcome is signup.Rejoin.BLOCKED:
        return state.message(
            request,
            status=409,
            title="We cannot add this address back",
            text="Mail to this address was refused or reported as unwanted, so it stays off the list.",
            hint=f"Write to {state.site.unsubscribe_address} if this is a mistake.",
        )
    if rejoined.mail is not None:
        background.add_task(state.outbox.nudge)
    return confirmed_page(
        state, request, LinkClaim(result.subscriber_id, result.link_key), fresh=True
    )
