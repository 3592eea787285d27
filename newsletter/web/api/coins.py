"""``/api/coins`` and a subscriber's watchlist: any coin among those the market source returns."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from fastapi import Path as PathParam

from newsletter.services import subscribers, subscriptions
from newsletter.web.api.schemas import (
    MAX_ID,
    CoinOut,
    CoinPage,
    Problem,
    SubscriberOut,
    Watchlist,
    plain,
)
from newsletter.web.state import State

router = APIRouter()


@router.get(
    "/coins",
    response_model=CoinPage,
    summary="The coins a reader may follow: the newsletter's own, then the top coins by market cap",
)
def list_coins(
    state: State,
    q: Annotated[
        str | None, Query(max_length=100, description="Part of the id, name or symbol.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
) -> CoinPage:
    try:
        q = plain(q)
    except ValueError as exc:
        raise HTTPException(422, f"q {exc}") from None
    coins = subscriptions.followable_coins(state.database, state.settings.market.coins)
    found = subscriptions.matching(coins, q or "")
    items = [CoinOut(id=coin.id, label=coin.label) for coin in found[offset : offset + limit]]
    return CoinPage(total=len(found), limit=limit, offset=offset, items=items)


@router.put(
    "/subscribers/{subscriber_id}/watchlist",
    response_model=SubscriberOut,
    responses={
        404: {"model": Problem},
        422: {"model": Problem, "description": "A coin the market source does not return."},
    },
    summary="Set the coins a subscriber follows (any of GET /api/coins)",
)
def set_watchlist(
    subscriber_id: Annotated[int, PathParam(ge=1, le=MAX_ID)], body: Watchlist, state: State
) -> SubscriberOut:
    subscriber = subscribers.set_watchlist(
        state.database, subscriber_id, body.coins, default=state.settings.market.coins
    )
    if subscriber is None:
        raise HTTPException(404, f"no subscriber has the id {subscriber_id}")
    return SubscriberOut.of(subscriber)
