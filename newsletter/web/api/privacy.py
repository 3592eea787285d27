"""``/api/privacy``: the right of access (export) and the right to erasure."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from newsletter.services import privacy
from newsletter.web.api.schemas import Address, Erasure, Problem
from newsletter.web.state import State

router = APIRouter()


@router.post(
    "/privacy/export",
    responses={422: {"model": Problem}},
    summary="Everything held about an address, as JSON (right of access)",
)
def privacy_export(body: Address, state: State) -> dict[str, Any]:
    return privacy.export_address(state.database, body.email, now=state.clock())


@router.post(
    "/privacy/erase",
    response_model=Erasure,
    responses={422: {"model": Problem}},
    summary="Erase an address (right to erasure); a hash keeps it suppressed",
)
def privacy_erase(body: Address, state: State) -> Erasure:
    removal = privacy.erase_address(state.database, body.email, now=state.clock())
    return Erasure(found=removal.found, suppressed=removal.suppressed)
