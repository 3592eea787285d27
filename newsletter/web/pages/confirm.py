"""The confirmation link: a page that changes nothing (GET), and its button (POST)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import HTMLResponse, Response

from newsletter.services import subscriptions
from newsletter.web.pages.common import (
    Short,
    already_confirmed_page,
    confirmed_page,
    page_responses,
)
from newsletter.web.state import State, WebState
from subscribers import signup
from subscribers.errors import BadToken
from subscribers.tokens import ConfirmationClaim, LinkClaim

router = APIRouter(tags=["pages"], default_response_class=HTMLResponse)


def _token_problem(state: WebState, request: Request, exc: BadToken) -> HTMLResponse:
    expired = "expired" in exc.message
    return state.message(
        request,
        status=410 if expired else 400,
        title="This link has expired" if expired else "This link does not work",
        text=(
            "Confirmation links work for a limited time."
            if expired
            else "The link may have been cut or altered on its way."
        )
        + " Subscribe again and we will send you a new one.",
        hint=None,
    )


def _read(state: WebState, token: str, *, now: datetime | None = None) -> ConfirmationClaim:
    return state.signer.read_confirmation(
        token,
        max_age_seconds=state.settings.confirm_token_hours * 3600,
        now=now or state.clock(),
    )


@router.get(
    "/confirm/{token}",
    responses=page_responses(400, 410),
    summary="The confirmation page (changes nothing)",
)
def confirm_page(token: str, request: Request, state: State) -> Response:
    try:
        claim = _read(state, token)
    except BadToken as exc:
        return _token_problem(state, request, exc)
    if subscriptions.is_confirmed(state.database, claim.link):
        return already_confirmed_page(state, request)
    return state.page(request, "confirm.html.j2", title="Confirm your subscription", form=True)


@router.post(
    "/confirm/{token}",
    responses=page_responses(400, 403, 404, 410, 422),
    summary="Confirm a subscription",
)
def confirm(
    token: str,
    request: Request,
    state: State,
    background: BackgroundTasks,
    csrf_token: Short = "",
) -> Response:
    if not state.csrf.check(request, csrf_token):
        return state.page(
            request,
            "confirm.html.j2",
            status=403,
            title="Confirm your subscription",
            form=True,
            error="This form had expired. Please press the button again.",
        )
    now = state.clock()
    try:
        claim = _read(state, token, now=now)
    except BadToken as exc:
        return _token_problem(state, request, exc)
    confirmed = subscriptions.confirm(
        state.database,
        claim.subscriber_id,
        mails=state.mails,
        nonce=claim.nonce,
        key=claim.key,
        ip=state.client_ip(request),
        user_agent=request.headers.get("user-agent"),
        now=now,
    )
    result = confirmed.result
    if confirmed.mail is not None:
        background.add_task(state.outbox.nudge)
        link = LinkClaim(result.subscriber_id, result.link_key)
        return confirmed_page(state, request, link, fresh=True)
    if result.outcome is signup.Confirmation.ALREADY:
        return already_confirmed_page(state, request)
    if result.outcome is signup.Confirmation.UNKNOWN:
        return state.message(
            request,
            status=404,
            title="This address is not on the list",
            text="It may have been removed since this link was sent. Subscribe again to come back.",
        )
    return state.message(
        request,
        status=410,
        title="This link was already used",
        text="A confirmation link works once. Subscribe again and we will send you a new one.",
    )
