"""``/api/relays``: what each SMTP relay did with the messages handed to it, all editions together."""

from __future__ import annotations

from fastapi import APIRouter

from newsletter.web.api.schemas import RelayOut
from newsletter.web.state import State

router = APIRouter()


@router.get(
    "/relays",
    response_model=list[RelayOut],
    summary="Per SMTP relay: messages sent, deferred, failed and skipped (all editions)",
)
def relays(state: State) -> list[RelayOut]:
    return [RelayOut(relay=relay, **counts) for relay, counts in state.editions.relays().items()]
