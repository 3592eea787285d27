"""``/api/subscribers`` and ``/api/unsubscribes``: list, search, add, import, export, delete, leave."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, File, HTTPException, Query, Response, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import StreamingResponse

from newsletter.services import subscribers, subscriptions
from newsletter.web.api.schemas import (
    MAX_ID,
    AddResult,
    ImportResult,
    NewSubscriber,
    Problem,
    SubscriberOut,
    SubscriberPage,
    UnsubscribeRequest,
    UnsubscribeResult,
    plain,
)
from newsletter.web.state import State
from subscribers import signup
from subscribers.formats import ImportFormat
from subscribers.model import SubscriberStatus
from subscribers.tokens import UNSUBSCRIBE, LinkClaim

IMPORT_MAX_BYTES = 20_000_000

router = APIRouter()


@router.get("/subscribers", response_model=SubscriberPage, summary="List and search subscribers")
def list_subscribers(
    state: State,
    status: SubscriberStatus | None = None,
    q: Annotated[
        str | None, Query(max_length=320, description="Part of the address or name.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
) -> SubscriberPage:
    try:
        q = plain(q)
    except ValueError as exc:
        raise HTTPException(422, f"q {exc}") from None
    page = subscribers.search(state.database, status=status, text=q, limit=limit, offset=offset)
    items = [SubscriberOut.of(row) for row in page.items]
    return SubscriberPage(total=page.total, limit=limit, offset=offset, items=items)


@router.post(
    "/subscribers",
    response_model=AddResult,
    status_code=201,
    responses={
        200: {"model": AddResult, "description": "Already on the list; nothing changed."},
        409: {"model": Problem, "description": "The address left and may not be re-added."},
        422: {"model": Problem, "description": "Not a valid address or time zone."},
    },
    summary="Add a subscriber",
)
def add(
    body: NewSubscriber, state: State, response: Response, background: BackgroundTasks
) -> AddResult:
    added = subscribers.add(
        state.database,
        signer=state.signer,
        mails=state.mails,
        email=body.email,
        name=body.name,
        timezone=body.timezone,
        confirmed=body.confirmed,
        source="api",
        now=state.clock(),
    )
    if not added.created:
        response.status_code = 200
    elif added.mail is not None:
        background.add_task(state.outbox.nudge)
    return AddResult(created=added.created, subscriber=SubscriberOut.of(added.subscriber))


@router.get(
    "/subscribers/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "CSV, readable by import."}},
    summary="Export subscribers as CSV",
)
def export(state: State, status: SubscriberStatus | None = None) -> StreamingResponse:
    return StreamingResponse(
        subscribers.export_chunks(state.database, status=status),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": 'attachment; filename="subscribers.csv"'},
    )


@router.post(
    "/subscribers/import",
    response_model=ImportResult,
    responses={422: {"model": Problem, "description": "The file cannot be read at all."}},
    summary="Import subscribers from CSV (email[,name,timezone]) or another tool's export; "
    "each bad row is reported",
    description="The file is this newsletter's CSV or the subscriber export of Mailchimp, "
    "Substack, beehiiv, listmonk or Buttondown (`from`; `auto` tells it by the header row). "
    "Rows the file shows as unsubscribed, cleaned, bounced or complained are suppressed, never "
    "confirmed; consent time and source, names and time zones are kept where the file has them. "
    "All or nothing: a file unusable partway through imports nothing. A re-import of the same "
    "file changes nothing.",
)
def import_file(
    state: State,
    file: Annotated[UploadFile, File(description="CSV, UTF-8, with a header row.")],
    confirmed: Annotated[
        bool,
        Query(
            description="Import plain CSV rows as confirmed; another tool's export keeps the "
            "status it gives."
        ),
    ] = False,
    source_format: Annotated[
        ImportFormat,
        Query(
            alias="from",
            description="The tool the file was exported from; auto tells it by the header row.",
        ),
    ] = ImportFormat.AUTO,
) -> ImportResult:
    with tempfile.TemporaryDirectory(prefix="newsletter-import-") as folder:
        path = Path(folder) / "import.csv"
        written = 0
        with path.open("wb") as handle:
            while chunk := file.file.read(1 << 16):
                written += len(chunk)
                if written > IMPORT_MAX_BYTES:
                    raise HTTPException(413, f"the file is larger than {IMPORT_MAX_BYTES} bytes")
                handle.write(chunk)
        report = subscribers.import_csv(
            state.database,
            path,
            settings=state.settings,
            confirmed=confirmed,
            source=f"api-import:{_file_label(file.filename)}",
            source_format=source_format,
            now=state.clock(),
        )
    return ImportResult.of(report)


def _file_label(name: str | None) -> str:
    cleaned = "".join(char for char in (name or "upload.csv") if char.isprintable())
    return cleaned[-100:] or "upload.csv"


SubscriberId = Annotated[int, PathParam(ge=1, le=MAX_ID)]


@router.get(
    "/subscribers/{subscriber_id}",
    response_model=SubscriberOut,
    responses={404: {"model": Problem}},
    summary="One subscriber",
)
def get_subscriber(subscriber_id: SubscriberId, state: State) -> SubscriberOut:
    subscriber = subscribers.get(state.database, subscriber_id)
    if subscriber is None:
        raise HTTPException(404, f"no subscriber has the id {subscriber_id}")
    return SubscriberOut.of(subscriber)


@router.delete(
    "/subscribers/{subscriber_id}",
    status_code=204,
    responses={404: {"model": Problem}},
    summary="Delete a subscriber (an address that left stays suppressed)",
)
def delete_subscriber(subscriber_id: SubscriberId, state: State) -> Response:
    removal = subscribers.delete(state.database, subscriber_id, now=state.clock())
    if removal is None:
        raise HTTPException(404, f"no subscriber has the id {subscriber_id}")
    return Response(status_code=204)


@router.post(
    "/unsubscribes",
    response_model=UnsubscribeResult,
    responses={
        400: {"model": Problem, "description": "The token is not valid."},
        404: {"model": Problem},
        422: {"model": Problem},
    },
    summary="Unsubscribe an address or a List-Unsubscribe token (e.g. from the mailto: inbox)",
)
def unsubscribe(
    body: UnsubscribeRequest, state: State, background: BackgroundTasks
) -> UnsubscribeResult:
    if bool(body.email) == bool(body.token):
        raise HTTPException(422, "give either email or token")
    who: LinkClaim | str = (
        state.signer.read(body.token, UNSUBSCRIBE) if body.token else body.email or ""
    )
    left = subscriptions.leave_by_operator(
        state.database, who, mails=state.mails, reason="api", now=state.clock()
    )
    result = left.result
    if result.outcome is signup.Leave.UNKNOWN:
        raise HTTPException(404, "that subscriber is not on the list")
    if left.mail is not None:
        background.add_task(state.outbox.nudge)
    state.metrics.count(state.metrics.unsubscribes, outcome=result.outcome.value)
    return UnsubscribeResult(email=result.email, outcome=result.outcome)
