"""Where a personal link is expected but none was given: how to find one."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from newsletter.web.pages.common import HTML
from newsletter.web.state import State

router = APIRouter(tags=["pages"], default_response_class=HTMLResponse)


@router.get("/unsubscribe", responses=HTML, summary="How to unsubscribe (no personal link)")
def unsubscribe_help(request: Request, state: State) -> Response:
    return state.page(request, "link_help.html.j2", title="Unsubscribe", purpose="unsubscribe")


@router.get("/preferences", responses=HTML, summary="How to change preferences (no personal link)")
def preferences_help(request: Request, state: State) -> Response:
    return state.page(request, "link_help.html.j2", title="Your preferences", purpose="preferences")
