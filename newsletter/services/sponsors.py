"""Sponsor placements as use cases: add, list, remove, report, and the click redirect.

The CLI (``newsletter sponsors``) and the admin API (``/api/sponsors``) call these same functions;
the public redirect ``/s/{placement}/{edition}`` calls :func:`follow_click`. The rules are in
:mod:`newsletter.sponsors`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from newsletter import sponsors
from newsletter.config import Settings
from newsletter.models import SponsorPlacement
from newsletter.services.queued import Transactions
from newsletter.sponsors import NewPlacement, PlacementReport, Removed


@dataclass(frozen=True, slots=True)
class Placement:
    """A stored placement as the doors show it."""

    id: int
    name: str
    url: str
    text: str
    image_url: str | None
    start_date: date
    end_date: date
    created_at: datetime


def _placement(row: SponsorPlacement) -> Placement:
    return Placement(
        id=row.id,
        name=row.name,
        url=row.url,
        text=row.text,
        image_url=row.image_url,
        start_date=row.start_date,
        end_date=row.end_date,
        created_at=row.created_at,
    )


def add(
    database: Transactions, settings: Settings, new: NewPlacement, *, now: datetime
) -> Placement:
    """Store a placement; a SponsorError says what is wrong (a field, overlapping dates)."""
    with database.transaction() as session:
        return _placement(sponsors.add_placement(session, settings, new, now=now))


def placements(database: Transactions) -> list[Placement]:
    """Every placement, by start date."""
    with database.transaction(readonly=True) as session:
        return [_placement(row) for row in sponsors.all_placements(session)]


def remove(database: Transactions, placement_id: int) -> Removed:
    """Remove a placement that no edition that went out carried."""
    with database.transaction() as session:
        return sponsors.remove_placement(session, placement_id)


@dataclass(frozen=True, slots=True)
class Report:
    placement: Placement
    editions: tuple[sponsors.EditionCarried, ...]
    deliveries: int
    clicks: int


def report(database: Transactions) -> list[Report]:
    """Per placement: the editions that carried it, the deliveries sent of them, the clicks."""
    with database.transaction(readonly=True) as session:
        found: list[PlacementReport] = sponsors.report(session)
        return [
            Report(
                placement=_placement(item.placement),
                editions=item.editions,
                deliveries=item.deliveries,
                clicks=item.clicks,
            )
            for item in found
        ]


def follow_click(
    database: Transactions,
    settings: Settings,
    *,
    placement_id: int,
    edition_date: date,
    signature: str,
) -> str | None:
    """The sponsor's URL for a signed link the newsletter printed, counting the click; else None.

    Nothing about the reader is read or kept: the count is per placement and edition date.
    Without ``NEWSLETTER_SPONSOR_CLICK_COUNTS`` a link printed while it was on still leads to
    the sponsor, uncounted.
    """
    keys = [settings.secret_key.get_secret_value()]
    keys += [key.get_secret_value() for key in settings.secret_key_fallbacks]
    if not sponsors.signature_holds(keys, placement_id, edition_date, signature):
        return None
    if not settings.sponsor_click_counts:
        with database.transaction(readonly=True) as session:
            placement = session.get(SponsorPlacement, placement_id)
            return None if placement is None else placement.url
    with database.transaction() as session:
        return sponsors.count_click(session, placement_id, edition_date)
