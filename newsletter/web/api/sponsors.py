"""``/api/sponsors``: sponsor placements (list, add, remove) and the report of what ran."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter
from fastapi import Path as PathParam
from pydantic import BaseModel, Field, field_validator

from newsletter.models import IssueStatus
from newsletter.services import sponsors
from newsletter.sponsors import NewPlacement
from newsletter.web.api.schemas import MAX_ID, Problem, plain
from newsletter.web.state import State

router = APIRouter()


class PlacementIn(BaseModel):
    name: str = Field(min_length=1, max_length=100, description="The sponsor's name, plain text.")
    url: str = Field(min_length=1, max_length=2000, description="https URL the placement links to.")
    text: str = Field(
        min_length=1, max_length=2000, description="The message, plain text (HTML is dropped)."
    )
    image_url: str | None = Field(
        default=None, max_length=2000, description="https URL of an image shown above the text."
    )
    start_date: date = Field(description="First edition date.")
    end_date: date = Field(description="Last edition date (inclusive).")

    _text = field_validator("name", "url", "text", "image_url")(plain)


class PlacementOut(BaseModel):
    id: int
    name: str
    url: str
    text: str
    image_url: str | None
    start_date: date
    end_date: date
    created_at: datetime

    @classmethod
    def of(cls, placement: sponsors.Placement) -> PlacementOut:
        return cls(
            id=placement.id,
            name=placement.name,
            url=placement.url,
            text=placement.text,
            image_url=placement.image_url,
            start_date=placement.start_date,
            end_date=placement.end_date,
            created_at=placement.created_at,
        )


class RemovedOut(BaseModel):
    id: int
    drafts_to_rebuild: list[date] = Field(
        description="Draft editions built with the placement: rebuild them to drop it."
    )


class EditionCarriedOut(BaseModel):
    edition_date: date
    status: IssueStatus
    deliveries: int = Field(description="Deliveries of the edition sent.")
    clicks: int = Field(description="Clicks counted (0 when clicks are not counted).")


class PlacementReportOut(BaseModel):
    placement: PlacementOut
    editions: list[EditionCarriedOut]
    deliveries: int
    clicks: int
    clicks_counted: bool = Field(description="Whether NEWSLETTER_SPONSOR_CLICK_COUNTS is on.")


@router.get("/sponsors", response_model=list[PlacementOut], summary="Sponsor placements")
def list_placements(state: State) -> list[PlacementOut]:
    return [PlacementOut.of(item) for item in sponsors.placements(state.database)]


@router.post(
    "/sponsors",
    response_model=PlacementOut,
    status_code=201,
    responses={
        409: {"model": Problem, "description": "The dates overlap another placement."},
        422: {"model": Problem, "description": "A field is not valid."},
    },
    summary="Schedule a sponsor placement",
)
def add_placement(body: PlacementIn, state: State) -> PlacementOut:
    new = NewPlacement(
        name=body.name,
        url=body.url,
        text=body.text,
        image_url=body.image_url,
        start_date=body.start_date,
        end_date=body.end_date,
    )
    added = sponsors.add(state.database, state.settings, new, now=state.clock())
    return PlacementOut.of(added)


@router.get(
    "/sponsors/report",
    response_model=list[PlacementReportOut],
    summary="Per placement: the editions that carried it, their sent deliveries and clicks",
)
def report(state: State) -> list[PlacementReportOut]:
    counted = state.settings.sponsor_click_counts
    return [
        PlacementReportOut(
            placement=PlacementOut.of(item.placement),
            editions=[
                EditionCarriedOut(
                    edition_date=edition.edition_date,
                    status=edition.status,
                    deliveries=edition.deliveries,
                    clicks=edition.clicks,
                )
                for edition in item.editions
            ],
            deliveries=item.deliveries,
            clicks=item.clicks,
            clicks_counted=counted,
        )
        for item in sponsors.report(state.database)
    ]


@router.delete(
    "/sponsors/{placement_id}",
    response_model=RemovedOut,
    responses={
        404: {"model": Problem, "description": "No placement has that id."},
        409: {"model": Problem, "description": "The placement ran; it is kept for its report."},
    },
    summary="Remove a sponsor placement that has not run",
)
def remove_placement(
    placement_id: Annotated[int, PathParam(ge=1, le=MAX_ID)], state: State
) -> RemovedOut:
    removed = sponsors.remove(state.database, placement_id)
    return RemovedOut(id=removed.placement_id, drafts_to_rebuild=list(removed.drafts))
