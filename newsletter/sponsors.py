"""Sponsor placements: the sponsored slot of each edition, scheduled by date range.

A placement runs in every edition from its start date to its end date (inclusive); the ranges of two
placements never overlap, and never cover a ``[[sponsors]]`` slot of the settings, so an edition has
one sponsored slot at most. Its text is plain text (any HTML in it is dropped by nh3) and always
shown under a label. The edition records the placement it carried, so the report counts the
editions and their sent deliveries.

With ``NEWSLETTER_SPONSOR_CLICK_COUNTS`` the placement's link goes through
``/s/{placement}/{edition}?sig=…``: a signed first-party redirect that adds one to a count per
placement and edition date and records nothing about the reader. The signature makes sure only
links this newsletter printed count (and the target is always the placement's own URL, so the
redirect cannot send anyone elsewhere).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from urllib.parse import urlsplit

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from kernel import insert_ignoring_conflicts
from newsletter.config import Settings
from newsletter.digest import Sponsor
from newsletter.errors import PlacementConflict, SponsorError, UnknownPlacement
from newsletter.models import (
    DeliveryCount,
    DeliveryStatus,
    Issue,
    IssueStatus,
    SponsorClick,
    SponsorPlacement,
)
from newsletter.sanitise import html_to_text

NAME_MAX = 100
TEXT_MAX = 400
URL_MAX = 2000
#: Editions whose readers saw the placement: what a placement that ran keeps.
WENT_OUT = (IssueStatus.SENDING, IssueStatus.SENT)
#: PostgreSQL advisory lock taken while a placement is added, so that two at once cannot overlap
#: (SQLite writers take turns already: every writing transaction begins IMMEDIATE).
ADD_LOCK = 0x5350_4F4E  # "SPON"


@dataclass(frozen=True, slots=True)
class NewPlacement:
    """A placement as an operator gives it (CLI, admin API); checked by :func:`add_placement`."""

    name: str
    url: str
    text: str
    start_date: date
    end_date: date
    image_url: str | None = None


@dataclass(frozen=True, slots=True)
class EditionCarried:
    """One edition that carried a placement: its deliveries sent and (if counted) the clicks."""

    edition_date: date
    status: IssueStatus
    deliveries: int
    clicks: int


@dataclass(frozen=True, slots=True)
class PlacementReport:
    placement: SponsorPlacement
    editions: tuple[EditionCarried, ...]

    @property
    def deliveries(self) -> int:
        return sum(edition.deliveries for edition in self.editions)

    @property
    def clicks(self) -> int:
        return sum(edition.clicks for edition in self.editions)


@dataclass(frozen=True, slots=True)
class Removed:
    placement_id: int
    #: Draft editions built with the placement: rebuild them so that they no longer show it.
    drafts: tuple[date, ...]


def plain_text(value: str, *, field: str, limit: int) -> str:
    """The plain text of a sponsor's field: tags and scripts dropped by nh3, spaces folded."""
    text = html_to_text(value)
    if not text:
        raise SponsorError(
            f"the placement's {field} is empty (once any HTML is removed)",
            hint=f"give the {field} as plain text",
        )
    if len(text) > limit:
        raise SponsorError(
            f"the placement's {field} is {len(text)} characters long; at most {limit} fit the slot",
            hint=f"shorten the {field}",
        )
    return text


def https_url(value: str, *, field: str) -> str:
    """A plain https URL with a host, or a SponsorError saying what is wrong with it."""
    url = value.strip()
    parts = urlsplit(url)
    if (
        parts.scheme != "https"
        or not parts.hostname
        or len(url) > URL_MAX
        or any(char in url for char in " \r\n\t<>\"'\\")
        or any(ord(char) < 32 or ord(char) == 127 for char in url)
    ):
        raise SponsorError(
            f"the placement's {field} {value!r} is not a plain https:// URL "
            f"(up to {URL_MAX} characters, no spaces or quotes)",
            hint=f"give the {field} as https://host/path",
        )
    return url


def checked(new: NewPlacement) -> NewPlacement:
    """``new`` with its text made plain and its URLs and dates checked."""
    if new.end_date < new.start_date:
        raise SponsorError(
            f"the placement ends ({new.end_date}) before it starts ({new.start_date})",
            hint="give --start on or before --end",
        )
    return NewPlacement(
        name=plain_text(new.name, field="name", limit=NAME_MAX),
        url=https_url(new.url, field="url"),
        text=plain_text(new.text, field="text", limit=TEXT_MAX),
        start_date=new.start_date,
        end_date=new.end_date,
        image_url=https_url(new.image_url, field="image URL") if new.image_url else None,
    )


def add_placement(
    session: Session, settings: Settings, new: NewPlacement, *, now: datetime
) -> SponsorPlacement:
    """Store a placement; refused when its dates overlap another placement or a settings slot."""
    clean = checked(new)
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADD_LOCK})
    clash = session.scalar(
        select(SponsorPlacement)
        .where(
            SponsorPlacement.start_date <= clean.end_date,
            SponsorPlacement.end_date >= clean.start_date,
        )
        .order_by(SponsorPlacement.start_date)
        .limit(1)
    )
    if clash is not None:
        raise PlacementConflict(
            f"the dates {clean.start_date} to {clean.end_date} overlap placement {clash.id} "
            f"({clash.name}, {clash.start_date} to {clash.end_date}); an edition has one "
            "sponsored slot",
            hint="choose dates outside that range, or remove the other placement first",
        )
    slots = sorted(
        slot.date for slot in settings.sponsors if clean.start_date <= slot.date <= clean.end_date
    )
    if slots:
        raise PlacementConflict(
            f"the settings schedule a [[sponsors]] slot on {slots[0]}, inside "
            f"{clean.start_date} to {clean.end_date}; an edition has one sponsored slot",
            hint="choose other dates, or remove that slot from the settings file",
        )
    placement = SponsorPlacement(
        name=clean.name,
        url=clean.url,
        text=clean.text,
        image_url=clean.image_url,
        start_date=clean.start_date,
        end_date=clean.end_date,
        created_at=now,
    )
    session.add(placement)
    session.flush()
    return placement


def all_placements(session: Session) -> list[SponsorPlacement]:
    return list(
        session.scalars(
            select(SponsorPlacement).order_by(SponsorPlacement.start_date, SponsorPlacement.id)
        )
    )


def remove_placement(session: Session, placement_id: int) -> Removed:
    """Delete a placement no edition that went out carried; drafts built with it lose it."""
    placement = session.get(SponsorPlacement, placement_id)
    if placement is None:
        raise UnknownPlacement(
            f"there is no sponsor placement {placement_id}",
            hint="'newsletter sponsors list' shows the placements and their ids",
        )
    carried = list(
        session.execute(
            select(Issue.id, Issue.edition_date, Issue.status)
            .where(Issue.sponsor_placement_id == placement_id)
            .order_by(Issue.edition_date)
        )
    )
    went_out = [row.edition_date for row in carried if row.status in WENT_OUT]
    if went_out:
        raise PlacementConflict(
            f"placement {placement_id} ({placement.name}) ran in {len(went_out)} edition(s) "
            f"from {went_out[0]}; it is kept for its report",
            hint="a placement that ran cannot be removed",
        )
    ids = [row.id for row in carried]
    if ids:
        session.execute(update(Issue).where(Issue.id.in_(ids)).values(sponsor_placement_id=None))
    session.delete(placement)
    drafts = tuple(row.edition_date for row in carried if row.status is IssueStatus.DRAFT)
    return Removed(placement_id=placement_id, drafts=drafts)


def placement_on(session: Session, edition_date: date) -> SponsorPlacement | None:
    """The stored placement that runs on ``edition_date``, if any."""
    return session.scalar(
        select(SponsorPlacement)
        .where(
            SponsorPlacement.start_date <= edition_date,
            SponsorPlacement.end_date >= edition_date,
        )
        .order_by(SponsorPlacement.id)
        .limit(1)
    )


def sponsor_of(
    settings: Settings, placement: SponsorPlacement | None, edition_date: date
) -> Sponsor | None:
    """The sponsored slot an edition shows: the stored placement, else a ``[[sponsors]]`` slot."""
    if placement is not None:
        href = (
            click_url(settings, placement.id, edition_date)
            if settings.sponsor_click_counts
            else placement.url
        )
        return Sponsor(
            text=placement.text,
            url=placement.url,
            name=placement.name,
            href=href,
            image_url=placement.image_url,
            placement_id=placement.id,
        )
    return next(
        (
            Sponsor(text=slot.text, url=slot.url, label=slot.label, href=slot.url)
            for slot in settings.sponsors
            if slot.date == edition_date
        ),
        None,
    )


def scheduled_sponsor(session: Session, settings: Settings, edition_date: date) -> Sponsor | None:
    """The sponsored slot of a new build of ``edition_date``."""
    return sponsor_of(settings, placement_on(session, edition_date), edition_date)


def carried_sponsor(session: Session, settings: Settings, issue: Issue) -> Sponsor | None:
    """The sponsored slot an edition was built with (every variant shows the same one)."""
    placement = (
        session.get(SponsorPlacement, issue.sponsor_placement_id)
        if issue.sponsor_placement_id is not None
        else None
    )
    return sponsor_of(settings, placement, issue.edition_date)


# the click redirect


def click_signature(key: str, placement_id: int, edition_date: date) -> str:
    message = f"sponsor-click:{placement_id}:{edition_date.isoformat()}".encode()
    digest = hmac.new(key.encode(), message, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def click_url(settings: Settings, placement_id: int, edition_date: date) -> str:
    signature = click_signature(settings.secret_key.get_secret_value(), placement_id, edition_date)
    return f"{settings.base_url}/s/{placement_id}/{edition_date.isoformat()}?sig={signature}"


def signature_holds(
    keys: Sequence[str], placement_id: int, edition_date: date, signature: str
) -> bool:
    """Whether ``signature`` was made with one of ``keys`` (the current one or a fallback)."""
    return any(
        hmac.compare_digest(click_signature(key, placement_id, edition_date), signature)
        for key in keys
    )


def count_click(session: Session, placement_id: int, edition_date: date) -> str | None:
    """Add one click to the placement's count for that edition; its URL, or None when it is gone."""
    placement = session.get(SponsorPlacement, placement_id)
    if placement is None:
        return None
    session.execute(
        insert_ignoring_conflicts(
            session, SponsorClick, index_elements=["placement_id", "edition_date"]
        ).values(placement_id=placement_id, edition_date=edition_date, clicks=0)
    )
    session.execute(
        update(SponsorClick)
        .where(
            SponsorClick.placement_id == placement_id,
            SponsorClick.edition_date == edition_date,
        )
        .values(clicks=SponsorClick.clicks + 1)
    )
    return placement.url


# the report


def report(session: Session) -> list[PlacementReport]:
    """Each placement with the editions that carried it, their sent deliveries and clicks.

    Deliveries come from the counts the database keeps per edition (migration 0008): a few rows
    per edition whatever the size of the ledger.
    """
    placements = all_placements(session)
    issues = list(
        session.execute(
            select(Issue.id, Issue.edition_date, Issue.status, Issue.sponsor_placement_id)
            .where(Issue.sponsor_placement_id.is_not(None))
            .order_by(Issue.edition_date)
        )
    )
    sent = {
        issue_id: int(total or 0)
        for issue_id, total in session.execute(
            select(DeliveryCount.issue_id, func.sum(DeliveryCount.count))
            .where(
                DeliveryCount.status == DeliveryStatus.SENT.value,
                DeliveryCount.issue_id.in_([row.id for row in issues]),
            )
            .group_by(DeliveryCount.issue_id)
        )
    }
    clicks = {
        (row.placement_id, row.edition_date): row.clicks
        for row in session.scalars(select(SponsorClick))
    }
    found: list[PlacementReport] = []
    for placement in placements:
        editions = tuple(
            EditionCarried(
                edition_date=row.edition_date,
                status=row.status,
                deliveries=sent.get(row.id, 0),
                clicks=clicks.get((placement.id, row.edition_date), 0),
            )
            for row in issues
            if row.sponsor_placement_id == placement.id
        )
        found.append(PlacementReport(placement=placement, editions=editions))
    return found
