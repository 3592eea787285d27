"""The preferences form of a signed link: coins, sections, send time, format, pause."""

from __future__ import annotations

import functools
import zoneinfo
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response

from newsletter.services import subscriptions
from newsletter.services.subscriptions import Member
from newsletter.web.pages.common import Short, bad_link, gone, link_of, page_responses
from newsletter.web.state import State, WebState
from subscribers import preferences as prefs
from subscribers.errors import BadToken, InvalidPreferences
from subscribers.tokens import PREFERENCES, LinkClaim

router = APIRouter(tags=["pages"], default_response_class=HTMLResponse)


@functools.cache
def _zones() -> tuple[str, ...]:
    zones = {zone for zone in zoneinfo.available_timezones() if "/" in zone}
    zones.discard("posixrules")
    return ("UTC", *sorted(zone for zone in zones if not zone.startswith(("Etc/", "SystemV/"))))


#: The most coins a search lists (the reader's own are always listed besides).
SEARCH_LIMIT = 50


def _coins(state: WebState, member: Member | None = None) -> list[subscriptions.Coin]:
    """The coins one may follow, and those the reader follows already (kept if the market source
    no longer returns them)."""
    coins = subscriptions.followable_coins(state.database, state.settings.market.coins)
    chosen = member.preferences.watchlist if member is not None else None
    known = {coin.id for coin in coins}
    kept = [subscriptions.Coin(coin, coin) for coin in chosen or () if coin not in known]
    return [*coins, *kept]


def _preferences_page(
    state: WebState,
    request: Request,
    member: Member,
    chosen: prefs.Preferences,
    *,
    status: int = 200,
    saved: bool = False,
    problems: dict[str, str] | None = None,
    query: str = "",
) -> HTMLResponse:
    settings = state.settings
    coins = _coins(state, member)
    default = settings.market.coins
    watchlist = set(chosen.watchlist) if chosen.watchlist is not None else set(default)
    found = subscriptions.matching(coins, query) if query else []
    # The reader's coins first (so that saving keeps them), then the search's or the defaults.
    offered = {coin.id for coin in found[:SEARCH_LIMIT]} if query else set(default)
    shown = [coin for coin in coins if coin.id in watchlist] + [
        coin for coin in coins if coin.id in offered and coin.id not in watchlist
    ]
    sections = set(chosen.sections) if chosen.sections is not None else set(prefs.SECTIONS)
    _, unsubscribe_url, _ = state.mails.personal_links(member.subscriber_id, member.link_key)
    return state.page(
        request,
        "preferences.html.j2",
        status=status,
        title="Your preferences",
        form=True,
        email=member.email,
        status_value=member.status.value,
        coins=shown,
        watchlist=watchlist,
        query=query,
        found=len(found),
        search_limit=SEARCH_LIMIT,
        followable=len(coins),
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
def preferences_page(
    token: str,
    request: Request,
    state: State,
    q: Annotated[
        str, Query(max_length=100, description="Find coins to follow by name or symbol.")
    ] = "",
) -> Response:
    try:
        link = link_of(state, token, PREFERENCES)
    except BadToken:
        return bad_link(state, request)
    member = subscriptions.member(state.database, link)
    if member is None:
        return gone(state, request)
    query = "".join(char for char in q if char.isprintable()).strip()
    return _preferences_page(state, request, member, member.preferences, query=query)


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
        link = link_of(state, token, PREFERENCES)
    except BadToken:
        return bad_link(state, request)
    values: dict[str, list[str]] = {
        "watchlist": list(watchlist or []),
        "sections": list(sections or []),
        "send_hour": [send_hour],
        "timezone": [timezone],
        "format": [format],
        "paused": [paused] if paused else [],
    }
    stored = subscriptions.member(state.database, link)
    if stored is None:
        return gone(state, request)
    coins = [coin.id for coin in _coins(state, stored)]
    if not state.csrf.check(request, csrf_token):
        return _stored_preferences(
            state,
            request,
            link,
            status=403,
            problems={"form": "This form had expired; nothing was saved. Please try again."},
        )
    try:
        chosen = prefs.parse_form(values, coins=coins, default=state.settings.market.coins)
    except InvalidPreferences as exc:
        return _stored_preferences(state, request, link, status=422, problems=exc.problems)
    member = subscriptions.save_preferences(state.database, link, chosen)
    if member is None:
        return gone(state, request)
    return _preferences_page(state, request, member, chosen, saved=True)


def _stored_preferences(
    state: WebState,
    request: Request,
    link: LinkClaim,
    *,
    status: int,
    problems: dict[str, str],
) -> HTMLResponse:
    """The form with what is stored, and why nothing was saved."""
    member = subscriptions.member(state.database, link)
    if member is None:
        return gone(state, request)
    return _preferences_page(
        state, request, member, member.preferences, status=status, problems=problems
    )
