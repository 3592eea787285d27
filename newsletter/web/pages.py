"""The subscriber's pages: subscribe, confirm, preferences, unsubscribe (one click) and come back.

Every GET only reads; each change is a POST. Forms carry a CSRF token, except the one-click
unsubscribe, whose signed URL is the proof (RFC 8058: a mail client POSTs it with no cookie).
"""

from __future__ import annotations

import functools
import time
import zoneinfo
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import func, select

from newsletter.coins import coin_labels
from newsletter.models import Issue, IssueStatus
from newsletter.web.mails import Recipient
from newsletter.web.security import has_line_break
from newsletter.web.state import State, WebState
from subscribers import preferences as prefs
from subscribers import ratelimit, signup
from subscribers.addresses import normalise
from subscribers.errors import BadToken, InvalidAddress, InvalidPreferences
from subscribers.links import holder
from subscribers.model import Subscriber, SubscriberStatus
from subscribers.tokens import PREFERENCES, UNSUBSCRIBE, LinkClaim

router = APIRouter(tags=["pages"], default_response_class=HTMLResponse)

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
FORM_SOURCE = "web:subscribe-form"
HEADLINE = "Get daily crypto insights that make you smarter about your money"

Text = Annotated[str, Form(max_length=400)]
Short = Annotated[str, Form(max_length=100)]


# subscribe


def _latest_edition(state: WebState) -> str | None:
    with state.app.database.transaction(readonly=True) as session:
        latest = session.scalar(
            select(func.max(Issue.edition_date)).where(
                Issue.status.in_([IssueStatus.SENT, IssueStatus.SENDING])
            )
        )
    return latest.isoformat() if latest else None


def _subscribe_page(
    state: WebState,
    request: Request,
    *,
    status: int = 200,
    error: str | None = None,
    email: str = "",
) -> HTMLResponse:
    return state.page(
        request,
        "subscribe.html.j2",
        status=status,
        title=HEADLINE,
        form=True,
        headline=HEADLINE,
        error=error,
        email=email,
        latest=_latest_edition(state),
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
        address = normalise(email)
    except InvalidAddress:
        metrics.count(metrics.signups, outcome="invalid")
        return _subscribe_page(
            state,
            request,
            status=422,
            error="That does not look like an email address. Please check it and try again.",
            email=email,
        )
    settings = state.app.settings
    now = state.clock()
    ip = state.client_ip(request)
    consent = signup.Consent(
        at=now,
        ip=ip,
        user_agent=request.headers.get("user-agent"),
        source=FORM_SOURCE,
        wording=settings.consent_wording,
    )
    policy = ratelimit.SignupPolicy(
        per_client=settings.subscribe_ip_limit,
        per_mailbox=settings.subscribe_address_limit,
        mails_per_day=settings.confirmations_per_day,
    )
    # The limits commit on their own, so that the shared per-client row is locked only briefly.
    with state.write() as session:
        refused = ratelimit.check_signup(session, policy, ip=ip, address_key=address.key, now=now)
    if refused is not None:
        decision = refused.decision
        metrics.count(metrics.limited, scope=refused.scope)
        minutes = max(1, round(decision.retry_after / 60))
        return state.message(
            request,
            status=429,
            title="Too many attempts",
            text="We received too many requests from here or for this address.",
            hint=f"Please try again in about {minutes} minute{'s' if minutes != 1 else ''}.",
            headers={"retry-after": str(decision.retry_after)},
        )
    with state.write() as session:
        result = signup.request(session, address.email, consent=consent, timezone=timezone)
        mail = result.mail
        if mail is not None and not ratelimit.allow_subscription_mail(
            session, policy, address_key=address.key, now=now
        ):
            metrics.count(metrics.limited, scope="subscription-mail")
            mail = None
    metrics.count(metrics.signups, outcome=result.outcome.value)
    recipient = Recipient(result.subscriber_id, result.email, result.link_key)
    if mail == "confirm":
        token = state.signer.sign_confirmation(
            result.subscriber_id, nonce=result.nonce, now=now, key=result.link_key
        )
        background.add_task(state.mailer.confirmation, recipient, token=token)
    elif mail == "already":
        background.add_task(state.mailer.already_subscribed, recipient)
    return done


@router.get("/subscribe/check-inbox", responses=HTML, summary="After subscribing")
def check_inbox(request: Request, state: State) -> Response:
    return state.page(
        request,
        "check_inbox.html.j2",
        title="Check your inbox",
        hours=state.app.settings.confirm_token_hours,
    )


# confirm


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


@router.get(
    "/confirm/{token}",
    responses=page_responses(400, 410),
    summary="The confirmation page (changes nothing)",
)
def confirm_page(token: str, request: Request, state: State) -> Response:
    try:
        claim = state.signer.read_confirmation(
            token,
            max_age_seconds=state.app.settings.confirm_token_hours * 3600,
            now=state.clock(),
        )
    except BadToken as exc:
        return _token_problem(state, request, exc)
    with state.app.database.transaction(readonly=True) as session:
        subscriber = holder(session, claim.link)
        already = subscriber is not None and subscriber.status is SubscriberStatus.CONFIRMED
    if already:
        return _already_confirmed_page(state, request)
    return state.page(request, "confirm.html.j2", title="Confirm your subscription", form=True)


def _confirmed_page(
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


def _already_confirmed_page(state: WebState, request: Request) -> HTMLResponse:
    """A used confirmation link may be in anyone's hands (a forwarded mail): no personal link."""
    return state.page(
        request,
        "confirmed.html.j2",
        title="You are already subscribed",
        fresh=False,
        preferences_url=None,
    )


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
        claim = state.signer.read_confirmation(
            token, max_age_seconds=state.app.settings.confirm_token_hours * 3600, now=now
        )
    except BadToken as exc:
        return _token_problem(state, request, exc)
    with state.write() as session:
        result = signup.confirm(
            session,
            claim.subscriber_id,
            nonce=claim.nonce,
            ip=state.client_ip(request),
            user_agent=request.headers.get("user-agent"),
            now=now,
            key=claim.key,
        )
    link = LinkClaim(result.subscriber_id, result.link_key)
    if result.outcome is signup.Confirmation.CONFIRMED and result.email:
        background.add_task(
            state.mailer.welcome, Recipient(result.subscriber_id, result.email, result.link_key)
        )
        return _confirmed_page(state, request, link, fresh=True)
    if result.outcome is signup.Confirmation.ALREADY:
        return _already_confirmed_page(state, request)
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


# preferences


@dataclass(frozen=True, slots=True)
class Coin:
    id: str
    label: str


_coin_cache: dict[tuple[str, ...], tuple[float, list[Coin]]] = {}


def _coins(state: WebState) -> list[Coin]:
    """The coins a subscriber can watch, named as the market data names them (cached a while)."""
    ids = tuple(state.app.settings.market.coins)
    cached = _coin_cache.get(ids)
    if cached and time.monotonic() - cached[0] < 600:
        return cached[1]
    with state.app.database.transaction(readonly=True) as session:
        named = coin_labels(session, ids)
    coins = [Coin(coin, named.labels[coin]) for coin in ids]
    if named.complete:  # cache only once the market data names every coin
        _coin_cache[ids] = (time.monotonic(), coins)
    return coins


@functools.cache
def _zones() -> tuple[str, ...]:
    zones = {zone for zone in zoneinfo.available_timezones() if "/" in zone}
    zones.discard("posixrules")
    return ("UTC", *sorted(zone for zone in zones if not zone.startswith(("Etc/", "SystemV/"))))


def _subscriber_for(state: WebState, token: str, purpose: str) -> LinkClaim:
    """Whose link this is (its key is checked against the row by ``subscribers.links.holder``)."""
    return state.signer.read(token, purpose)


def _bad_link(state: WebState, request: Request) -> HTMLResponse:
    return state.message(
        request,
        status=400,
        title="This link does not work",
        text="The link may have been cut or altered on its way. "
        "Use the link at the bottom of any edition you received.",
    )


def _gone(state: WebState, request: Request) -> HTMLResponse:
    return state.message(
        request,
        status=404,
        title="This address is not on the list",
        text="It may have been removed. You can subscribe again on the home page.",
    )


def _preferences_page(
    state: WebState,
    request: Request,
    subscriber: Subscriber,
    chosen: prefs.Preferences,
    *,
    status: int = 200,
    saved: bool = False,
    problems: dict[str, str] | None = None,
) -> HTMLResponse:
    settings = state.app.settings
    coins = _coins(state)
    watchlist = set(chosen.watchlist) if chosen.watchlist is not None else {c.id for c in coins}
    sections = set(chosen.sections) if chosen.sections is not None else set(prefs.SECTIONS)
    _, unsubscribe_url, _ = state.mailer.personal_links(subscriber.id, subscriber.link_key)
    return state.page(
        request,
        "preferences.html.j2",
        status=status,
        title="Your preferences",
        form=True,
        email=subscriber.email,
        status_value=subscriber.status.value,
        coins=coins,
        watchlist=watchlist,
        sections=[(name, prefs.SECTION_LABELS[name], name in sections) for name in prefs.SECTIONS],
        send_hour=chosen.send_hour,
        timezone=chosen.timezone,
        zones=_zones(),
        format=chosen.format.value,
        paused=chosen.paused,
        default_time=settings.send_time,
        default_zone=settings.timezone,
        saved=saved,
        problems=problems or {},
        unsubscribe_url=unsubscribe_url,
    )


@router.get(
    "/preferences/{token}", responses=page_responses(400, 404), summary="The preferences form"
)
def preferences_page(token: str, request: Request, state: State) -> Response:
    try:
        link = _subscriber_for(state, token, PREFERENCES)
    except BadToken:
        return _bad_link(state, request)
    with state.app.database.transaction(readonly=True) as session:
        subscriber = holder(session, link)
        if subscriber is None:
            return _gone(state, request)
        return _preferences_page(state, request, subscriber, prefs.current(subscriber))


@router.post(
    "/preferences/{token}", responses=page_responses(400, 403, 404, 422), summary="Save preferences"
)
def save_preferences(
    token: str,
    request: Request,
    state: State,
    csrf_token: Short = "",
    watchlist: Annotated[list[str] | None, Form(max_length=100)] = None,
    sections: Annotated[list[str] | None, Form(max_length=10)] = None,
    send_hour: Short = "",
    timezone: Short = "",
    format: Short = "html",
    paused: Short = "",
) -> Response:
    try:
        link = _subscriber_for(state, token, PREFERENCES)
    except BadToken:
        return _bad_link(state, request)
    values: dict[str, list[str]] = {
        "watchlist": list(watchlist or []),
        "sections": list(sections or []),
        "send_hour": [send_hour],
        "timezone": [timezone],
        "format": [format],
        "paused": [paused] if paused else [],
    }
    coins = [coin.id for coin in _coins(state)]
    if not state.csrf.check(request, csrf_token):
        return _stored_preferences(
            state,
            request,
            link,
            status=403,
            problems={"form": "This form had expired; nothing was saved. Please try again."},
        )
    try:
        chosen = prefs.parse_form(values, coins=coins)
    except InvalidPreferences as exc:
        return _stored_preferences(state, request, link, status=422, problems=exc.problems)
    with state.write() as session:
        subscriber = holder(session, link, for_update=True)
        if subscriber is not None:
            prefs.apply(subscriber, chosen)
    if subscriber is None:
        return _gone(state, request)
    return _preferences_page(state, request, subscriber, chosen, saved=True)


def _stored_preferences(
    state: WebState,
    request: Request,
    link: LinkClaim,
    *,
    status: int,
    problems: dict[str, str],
) -> HTMLResponse:
    """The form with what is stored, and why nothing was saved."""
    with state.app.database.transaction(readonly=True) as session:
        subscriber = holder(session, link)
    if subscriber is None:
        return _gone(state, request)
    return _preferences_page(
        state, request, subscriber, prefs.current(subscriber), status=status, problems=problems
    )


# unsubscribe and come back


def _unsubscribe_page(
    state: WebState,
    request: Request,
    token: str,
    subscriber: Subscriber | None,
    *,
    just_left: bool = False,
    status: int = 200,
    error: str | None = None,
) -> HTMLResponse:
    if subscriber is None:
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
    receiving = subscriber.status in (SubscriberStatus.PENDING, SubscriberStatus.CONFIRMED)
    page_state = "subscribed" if receiving else subscriber.status.value
    return state.page(
        request,
        "unsubscribe.html.j2",
        status=status,
        title="Unsubscribe" if receiving else "You are unsubscribed",
        form=True,
        state=page_state,
        token=token,
        email=subscriber.email,
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
        link = _subscriber_for(state, token, UNSUBSCRIBE)
    except BadToken:
        return _bad_link(state, request)
    with state.app.database.transaction(readonly=True) as session:
        return _unsubscribe_page(state, request, token, holder(session, link))


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
        link = _subscriber_for(state, token, UNSUBSCRIBE)
    except BadToken:
        metrics.count(metrics.unsubscribes, outcome="bad-token")
        return _bad_link(state, request)
    channel = "one-click" if list_unsubscribe == "One-Click" else "post"
    with state.write() as session:
        result = signup.leave(session, link, now=state.clock(), reason=channel)
        subscriber = holder(session, link)
    response = _unsubscribe_page(
        state, request, token, subscriber, just_left=result.outcome is signup.Leave.UNSUBSCRIBED
    )
    metrics.count(metrics.unsubscribes, outcome=result.outcome.value)
    if result.outcome is signup.Leave.UNSUBSCRIBED and result.email:
        background.add_task(
            state.mailer.goodbye, Recipient(result.subscriber_id, result.email, result.link_key)
        )
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
        link = _subscriber_for(state, token, UNSUBSCRIBE)
    except BadToken:
        return _bad_link(state, request)
    if not state.csrf.check(request, csrf_token):
        with state.app.database.transaction(readonly=True) as session:
            return _unsubscribe_page(
                state,
                request,
                token,
                holder(session, link),
                status=403,
                error="This form had expired. Please press the button again.",
            )
    consent = signup.Consent(
        at=state.clock(),
        ip=state.client_ip(request),
        user_agent=request.headers.get("user-agent"),
        source="web:resubscribe",
        wording=state.app.settings.consent_wording,
    )
    with state.write() as session:
        result = signup.rejoin(session, link, consent=consent)
    if result.outcome is signup.Rejoin.UNKNOWN:
        return _gone(state, request)
    if result.outcome is signup.Rejoin.BLOCKED:
        return state.message(
            request,
            status=409,
            title="We cannot add this address back",
            text="Mail to this address was refused or reported as unwanted, so it stays off the list.",
            hint=f"Write to {state.site.unsubscribe_address} if this is a mistake.",
        )
    if result.outcome is signup.Rejoin.REJOINED and result.email:
        background.add_task(
            state.mailer.welcome, Recipient(result.subscriber_id, result.email, result.link_key)
        )
    return _confirmed_page(
        state, request, LinkClaim(result.subscriber_id, result.link_key), fresh=True
    )


@router.get("/unsubscribe", responses=HTML, summary="How to unsubscribe (no personal link)")
def unsubscribe_help(request: Request, state: State) -> Response:
    return state.page(request, "link_help.html.j2", title="Unsubscribe", purpose="unsubscribe")


@router.get("/preferences", responses=HTML, summary="How to change preferences (no personal link)")
def preferences_help(request: Request, state: State) -> Response:
    return state.page(request, "link_help.html.j2", title="Your preferences", purpose="preferences")
