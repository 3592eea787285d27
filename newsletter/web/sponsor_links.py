"""``/s/{placement}/{edition}``: the sponsor link of an edition, counted when clicks are counted.

Only links the newsletter printed lead anywhere (the ``sig`` is an HMAC of the placement and the
edition date), and always to the placement's own URL: this is no open redirect. Nothing about the
reader is read or kept (no cookie, no subscriber, no address); the access log shows this path as it
shows any other.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import RedirectResponse, Response

from newsletter.services import sponsors
from newsletter.web.state import State

router = APIRouter(tags=["sponsors"])

MAX_ID = 2**62


@router.get(
    "/s/{placement_id}/{edition_date}",
    response_class=RedirectResponse,
    status_code=302,
    responses={
        302: {"description": "To the sponsor's page."},
        404: {"content": {"text/html": {}}, "description": "Not a link this newsletter printed."},
    },
    summary="A sponsor placement's link in an edition (counted when clicks are counted)",
)
def sponsor_link(
    placement_id: Annotated[int, PathParam(ge=1, le=MAX_ID)],
    edition_date: str,
    request: Request,
    state: State,
    sig: Annotated[str, Query(max_length=64, description="The link's signature.")] = "",
) -> Response:
    day = _parse(edition_date)
    target = (
        None
        if day is None or not sig
        else sponsors.follow_click(
            state.database,
            state.settings,
            placement_id=placement_id,
            edition_date=day,
            signature=sig,
        )
    )
    if target is None:
        return state.message(
            request,
            status=404,
            title="Link not found",
            text="This sponsor link is not one of ours, or the placement was removed.",
            hint="The archive lists every edition sent so far.",
        )
    return RedirectResponse(target, status_code=302, headers={"cache-control": "no-store"})


def _parse(value: str) -> date | None:
    if len(value) != 10:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None
