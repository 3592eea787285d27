"""``/api/stats``: subscribers and editions by status."""

from __future__ import annotations

from fastapi import APIRouter

from newsletter.services import stats as counts
from newsletter.web.api.schemas import Stats
from newsletter.web.state import State

router = APIRouter()


@router.get("/stats", response_model=Stats, summary="Counts of subscribers and editions")
def stats(state: State) -> Stats:
    overview = counts.overview(state.database)
    return Stats(
        subscribers={status.value: count for status, count in overview.subscribers.items()},
        paused=overview.paused,
        suppressed_hashes=overview.suppressed_hashes,
        editions={status.value: count for status, count in overview.editions.items()},
    )
