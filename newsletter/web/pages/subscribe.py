"""The subscribe page and form (double opt-in), and the "check your inbox" page."""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from newsletter.services import archive, subscriptions
from newsletter.web.pages.common import HTML, Short, Text, page_responses
from newsletter.web.security import has_line_break
from newsletter.web.state import State, WebState
from subscribers.errors import InvalidAddress

router = APIRouter(tags=["pages"], default_response_class=HTMLResponse)

HEADLINE = "Get daily crypto insights that make you smarter about your money"


def _subscribe_page(
    state: WebState,
    request: Request,
    *,
    status: int = 200,
    error: str | None = None,
    email: str = "",
) -> HTMLResponse:
    latest = archive.latest_public_edition(state.database)
    return state.page(
        request,
        "subscribe.html.j2",
        status=status,
        title=HEADLINE,
        form=True,
        headline=HEADLINE,
        error=error,
        email=email,
        latest=latest.isoformat() if latest else None,
    )


@router.get("/", responses=HTML, summary="The subscribe page")
def home(request: Request, state: State) -> Response:
    return _subscribe_page(state, request)


@router.post(
    "/subscribe",
    responses={
        303: {"description": "Go to the 'check your inbox' page."},
        **page_responses(400, 403, 422, 429),
    },
    summary="Subscribe (double opt-in): the same answer for any address",
)
def subscribe(
    request: Request,
    state: State,
    background: BackgroundTasks,
    email: Text = "",
    csrf_token: Short = "",
    website: Text = "",
    timezone: Short = "",
) -> Response:
    metrics = state.metrics
    if has_line_break(email, timezone, website, csrf_token):
        metrics.count(metrics.signups, outcome="rejected")
        return _subscribe_page(
            state,
            request,
            status=400,
            error="The address may not contain a line break.",
        )
    if not state.csrf.check(request, csrf_token):
        metrics.count(metrics.signups, outcome="csrf")
        return _subscribe_page(
            state,
            request,
            status=403,
            error="This form had expired. Please enter your address again.",
            email=email,
        )
    done = RedirectResponse(f"{state.site.prefix}/subscribe/check-inbox", status_code=303)
    if website.strip():
        # The honeypot: people never see this field; bots fill it. Answer as if all went well.
        metrics.count(metrics.signups, outcome="honeypot")
        return done
    try:
        outcome = subscriptions.subscribe(
            state.database,
            settings=state.settings,
            signer=state.signer,
            mails=state.mails,
            email=email,
            ip=state.client_ip(request),
            user_agent=request.headers.get("user-agent"),
            timezone=timezone,
            now=state.clock(),
        )
    except InvalidAddress:
        metrics.count(metrics.signups, outcome="invalid")
        return _subscribe_page(
            state,
            request,
            status=422,
            error="That does not look like an email address. Please check it and try again.",
            email=email,
        )
    if outcome.refused is not None:
        decision = outcome.refused.decision
        metrics.count(metrics.limited, scope=outcome.refused.scope)
        minutes = max(1, round(decision.retry_after / 60))
        return state.message(
            request,
            status=429,
            title="Too many attempts",
            text="We received too many requests from here or for this address.",
            hint=f"Please try again in about {minutes} minute{'s' if minutes != 1 else ''}.",
            headers={"retry-after": str(decision.retry_after)},
        )
    if outcome.mail_limited:
        metrics.count(metrics.limited, scope="subscription-mail")
    if outcome.outcome is not None:
        metrics.count(metrics.signups, outcome=outcome.outcome.value)
    if outcome.mail is not None:
        background.add_task(state.outbox.nudge)
    return done


@router.get("/subscribe/check-inbox", responses=HTML, summary="After subscribing")
def check_inbox(request: Request, state: State) -> Response:
    return state.page(
        request,
        "check_inbox.html.j2",
        title="Check your inbox",
        hours=state.settings.confirm_token_hours,
    )
