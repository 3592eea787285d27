"""The admin API under ``/api``: subscribers, privacy requests, editions, stats. Bearer token auth.

Every call needs ``Authorization: Bearer $NEWSLETTER_ADMIN_TOKEN``; without the setting the API is off
(401 to everything). Errors are JSON ``{"error": ..., "hint": ...}`` with a status that says what
kind of problem it is (see :mod:`newsletter.web.errors`).
"""

from __future__ import annotations

import csv
import hmac
import io
import logging
import tempfile
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import (
    APIRouter,
    BackgroundTasks,
    Depends,
    File,
    HTTPException,
    Query,
    Response,
    UploadFile,
)
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from newsletter import personal, pipeline
from newsletter.delivery import ledger
from newsletter.editions import get_issue, variant
from newsletter.models import Issue, IssueStatus
from newsletter.services import privacy
from newsletter.web.mails import Recipient
from newsletter.web.security import EDITION_POLICY
from newsletter.web.state import State, WebState
from subscribers import signup
from subscribers.model import Subscriber, SubscriberStatus, Suppression
from subscribers.service import (
    EXPORT_COLUMNS,
    add_subscriber,
    export_csv,
    get_by_email,
    import_rows,
    iter_subscribers,
    read_csv,
)
from subscribers.tokens import UNSUBSCRIBE

log = logging.getLogger(__name__)

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="AdminToken",
    description="The value of NEWSLETTER_ADMIN_TOKEN.",
)

MAX_ID = 2**62
IMPORT_MAX_BYTES = 20_000_000


class Problem(BaseModel):
    error: str
    hint: str | None = None


def require_admin(
    state: State,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    expected = state.app.settings.admin_token
    if expected is None or not expected.get_secret_value():
        raise HTTPException(
            401,
            "the admin API is off: set NEWSLETTER_ADMIN_TOKEN to turn it on",
            headers={"WWW-Authenticate": "Bearer"},
        )
    given = credentials.credentials if credentials is not None else ""
    if not hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.get_secret_value().encode()
    ):
        raise HTTPException(
            401,
            "missing or wrong bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )


def is_admin(state: WebState, credentials: HTTPAuthorizationCredentials | None) -> bool:
    """Whether ``credentials`` pass :func:`require_admin` (for pages that show more to the admin)."""
    try:
        require_admin(state, credentials)
    except HTTPException:
        return False
    return True


router = APIRouter(
    prefix="/api",
    tags=["admin"],
    dependencies=[Depends(require_admin)],
    responses={401: {"model": Problem, "description": "No or a wrong bearer token."}},
)


def _plain(value: str | None) -> str | None:
    """Refuse text a database cannot store or a header must not carry (NUL, line breaks, surrogates)."""
    if value is None:
        return None
    if any(char in value for char in "\r\n\x00"):
        raise ValueError("must not contain line breaks or NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


# models


class SubscriberOut(BaseModel):
    id: int
    email: str
    name: str | None
    status: SubscriberStatus
    paused: bool
    format: str
    timezone: str | None
    send_hour: int | None
    watchlist: list[str] | None
    sections: list[str] | None
    created_at: datetime
    confirmed_at: datetime | None
    unsubscribed_at: datetime | None
    consent_source: str | None

    @classmethod
    def of(cls, subscriber: Subscriber) -> SubscriberOut:
        return cls(
            id=subscriber.id,
            email=subscriber.email,
            name=subscriber.name,
            status=subscriber.status,
            paused=bool(subscriber.paused),
            format=subscriber.format.value,
            timezone=subscriber.timezone,
            send_hour=subscriber.send_hour,
            watchlist=subscriber.watchlist,
            sections=subscriber.sections,
            created_at=subscriber.created_at,
            confirmed_at=subscriber.confirmed_at,
            unsubscribed_at=subscriber.unsubscribed_at,
            consent_source=subscriber.consent_source,
        )


class SubscriberPage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[SubscriberOut]


class NewSubscriber(BaseModel):
    email: str = Field(min_length=1, max_length=320)
    name: str | None = Field(default=None, max_length=200)
    timezone: str | None = Field(default=None, max_length=64)
    confirmed: bool = Field(
        default=False,
        description="Add as confirmed (consent obtained elsewhere); otherwise a confirmation mail goes out.",
    )

    _text = field_validator("email", "name", "timezone")(_plain)


class AddResult(BaseModel):
    created: bool
    subscriber: SubscriberOut


class Rejected(BaseModel):
    line: int
    value: str
    reason: str


class ImportResult(BaseModel):
    added: int
    already_present: int
    suppressed: int
    rejected: list[Rejected]


class Address(BaseModel):
    email: str = Field(min_length=1, max_length=320)

    _text = field_validator("email")(_plain)


class UnsubscribeRequest(BaseModel):
    """One of ``email`` or ``token`` (the token of a List-Unsubscribe mailto: subject)."""

    email: str | None = Field(default=None, max_length=320)
    token: str | None = Field(default=None, max_length=500)

    _text = field_validator("email", "token")(_plain)


class UnsubscribeResult(BaseModel):
    email: str | None
    outcome: signup.Leave


class Erasure(BaseModel):
    found: bool
    suppressed: bool


class Stats(BaseModel):
    subscribers: dict[str, int]
    paused: int
    suppressed_hashes: int
    editions: dict[str, int]


class EditionOut(BaseModel):
    edition_date: date
    status: IssueStatus
    subject: str
    built_at: datetime
    sending_at: datetime | None
    sent_at: datetime | None
    deliveries: dict[str, int]
    web_url: str


class SendResult(BaseModel):
    edition_date: date
    accepted: bool = Field(description="True when the send runs in the background (202).")
    dry_run: bool = False
    already_sent: bool = False
    to_enqueue: int | None = None
    confirmed: int | None = None
    enqueued: int | None = None
    sent: int | None = None
    retried: int | None = None
    failed: int | None = None
    finished: bool | None = None
    variants: int | None = Field(default=None, description="Content variants (dry runs).")


class TestSend(BaseModel):
    to: list[str] = Field(min_length=1, max_length=20, description="Addresses for test copies.")


class TestSendResult(BaseModel):
    address: str
    accepted: bool
    detail: str


class Control(BaseModel):
    edition_date: date
    changed: bool = Field(description="False when the edition already was in that state.")
    dropped: int | None = Field(default=None, description="Queued deliveries dropped (cancel).")


class EditionStatsOut(BaseModel):
    edition_date: date
    status: str
    subject: str
    deliveries: dict[str, int]
    bounced: int
    complaints: int
    unsubscribes: int
    sent_at: datetime | None


# subscribers


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
        q = _plain(q)
    except ValueError as exc:
        raise HTTPException(422, f"q {exc}") from None
    conditions = []
    if status is not None:
        conditions.append(Subscriber.status == status)
    if q:
        needle = q.strip().lower()
        conditions.append(
            or_(
                Subscriber.email_key.contains(needle, autoescape=True),
                func.lower(Subscriber.name).contains(needle, autoescape=True),
            )
        )
    with state.app.database.transaction(readonly=True) as session:
        total = session.scalar(select(func.count()).select_from(Subscriber).where(*conditions)) or 0
        rows = session.scalars(
            select(Subscriber)
            .where(*conditions)
            .order_by(Subscriber.id)
            .limit(limit)
            .offset(offset)
        ).all()
        items = [SubscriberOut.of(row) for row in rows]
    return SubscriberPage(total=total, limit=limit, offset=offset, items=items)


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
    now = state.clock()
    with state.write() as session:
        subscriber, created = add_subscriber(
            session,
            body.email,
            name=body.name,
            timezone=body.timezone,
            confirmed=body.confirmed,
            source="api",
            now=now,
        )
        nonce = None
        if created and not body.confirmed:
            nonce = subscriber.confirm_nonce = signup.new_nonce()
        out = SubscriberOut.of(subscriber)
        link_key = subscriber.link_key
    if not created:
        response.status_code = 200
    elif nonce is not None:
        token = state.signer.sign_confirmation(out.id, nonce=nonce, now=now, key=link_key)
        background.add_task(
            state.mailer.confirmation,
            Recipient(out.id, out.email, link_key),
            token=token,
        )
    return AddResult(created=created, subscriber=out)


@router.get(
    "/subscribers/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "CSV, readable by import."}},
    summary="Export subscribers as CSV",
)
def export(state: State, status: SubscriberStatus | None = None) -> StreamingResponse:
    def rows() -> Iterator[str]:
        header = io.StringIO()
        csv.writer(header, lineterminator="\n").writerow(EXPORT_COLUMNS)
        yield header.getvalue()
        with state.app.database.transaction(readonly=True) as session:
            chunk: list[Subscriber] = []
            for subscriber in iter_subscribers(session, status=status):
                chunk.append(subscriber)
                if len(chunk) >= 500:
                    yield _csv_rows(chunk)
                    chunk.clear()
            yield _csv_rows(chunk)

    return StreamingResponse(
        rows(),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": 'attachment; filename="subscribers.csv"'},
    )


def _csv_rows(subscribers: list[Subscriber]) -> str:
    out = io.StringIO()
    export_csv(subscribers, out)
    return out.getvalue().split("\n", 1)[1]  # without the header export_csv writes


@router.post(
    "/subscribers/import",
    response_model=ImportResult,
    responses={422: {"model": Problem, "description": "The file cannot be read at all."}},
    summary="Import subscribers from CSV (email[,name,timezone]); each bad row is reported",
)
def import_file(
    state: State,
    file: Annotated[UploadFile, File(description="CSV, UTF-8, with a header row.")],
    confirmed: bool = False,
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
        report = import_rows(
            state.write,
            read_csv(
                path,
                max_field_chars=state.app.settings.import_max_field_chars,
                max_line_chars=state.app.settings.import_max_line_chars,
            ),
            confirmed=confirmed,
            source=f"api-import:{_file_label(file.filename)}",
            now=state.clock(),
        )
    return ImportResult(
        added=report.added,
        already_present=report.already_present,
        suppressed=report.suppressed,
        rejected=[Rejected(line=r.line, value=r.value, reason=r.reason) for r in report.rejected],
    )


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
    with state.app.database.transaction(readonly=True) as session:
        subscriber = session.get(Subscriber, subscriber_id)
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
    with state.write() as session:
        removal = privacy.delete_subscriber(session, subscriber_id, now=state.clock())
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
    with state.write() as session:
        who: signup.Who = (
            state.signer.read(body.token, UNSUBSCRIBE)
            if body.token
            else get_by_email(session, body.email or "").id
        )
        result = signup.leave(session, who, now=state.clock(), reason="api")
    if result.outcome is signup.Leave.UNKNOWN:
        raise HTTPException(404, "that subscriber is not on the list")
    if result.outcome is signup.Leave.UNSUBSCRIBED and result.email:
        background.add_task(
            state.mailer.goodbye, Recipient(result.subscriber_id, result.email, result.link_key)
        )
    state.metrics.count(state.metrics.unsubscribes, outcome=result.outcome.value)
    return UnsubscribeResult(email=result.email, outcome=result.outcome)


# privacy requests


@router.post(
    "/privacy/export",
    responses={422: {"model": Problem}},
    summary="Everything held about an address, as JSON (right of access)",
)
def privacy_export(body: Address, state: State) -> dict[str, Any]:
    with state.app.database.transaction(readonly=True) as session:
        return privacy.export(session, body.email, now=state.clock())


@router.post(
    "/privacy/erase",
    response_model=Erasure,
    responses={422: {"model": Problem}},
    summary="Erase an address (right to erasure); a hash keeps it suppressed",
)
def privacy_erase(body: Address, state: State) -> Erasure:
    with state.write() as session:
        removal = privacy.erase(session, body.email, now=state.clock())
    return Erasure(found=removal.found, suppressed=removal.suppressed)


# stats and editions


@router.get("/stats", response_model=Stats, summary="Counts of subscribers and editions")
def stats(state: State) -> Stats:
    with state.app.database.transaction(readonly=True) as session:
        subscribers = dict.fromkeys((status.value for status in SubscriberStatus), 0)
        for status, count in session.execute(
            select(Subscriber.status, func.count()).group_by(Subscriber.status)
        ):
            subscribers[status.value] = count
        paused = (
            session.scalar(
                select(func.count()).select_from(Subscriber).where(Subscriber.paused.is_(True))
            )
            or 0
        )
        hashes = session.scalar(select(func.count()).select_from(Suppression)) or 0
        editions = dict.fromkeys((status.value for status in IssueStatus), 0)
        for issue_status, count in session.execute(
            select(Issue.status, func.count()).group_by(Issue.status)
        ):
            editions[issue_status.value] = count
    return Stats(
        subscribers=subscribers, paused=paused, suppressed_hashes=hashes, editions=editions
    )


def _edition_out(state: WebState, session: Session, issue: Issue) -> EditionOut:
    return EditionOut(
        edition_date=issue.edition_date,
        status=issue.status,
        subject=issue.subject,
        built_at=issue.built_at,
        sending_at=issue.sending_at,
        sent_at=issue.sent_at,
        deliveries={
            status.value: count for status, count in ledger.counts(session, issue.id).items()
        },
        web_url=state.links.archive(issue.edition_date),
    )


@router.get(
    "/editions", response_model=list[EditionOut], summary="Editions with their delivery counts"
)
def editions(state: State, limit: Annotated[int, Query(ge=1, le=365)] = 30) -> list[EditionOut]:
    with state.app.database.transaction(readonly=True) as session:
        issues = session.scalars(select(Issue).order_by(Issue.edition_date.desc()).limit(limit))
        return [_edition_out(state, session, issue) for issue in issues]


EditionDate = Annotated[date, PathParam(description="YYYY-MM-DD")]


@router.get(
    "/editions/{edition_date}",
    response_model=EditionOut,
    responses={404: {"model": Problem}},
    summary="One edition's state and delivery counts",
)
def edition(edition_date: EditionDate, state: State) -> EditionOut:
    with state.app.database.transaction(readonly=True) as session:
        issue = get_issue(session, edition_date)
        if issue is None:
            raise HTTPException(404, f"there is no edition for {edition_date}")
        return _edition_out(state, session, issue)


@router.get(
    "/editions/{edition_date}/preview",
    responses={
        200: {
            "content": {"text/html": {"schema": {"type": "string"}}},
            "description": "The edition's HTML, public values.",
        },
        404: {"model": Problem},
    },
    summary="Preview an edition (final HTML, no personal data)",
)
def preview(edition_date: EditionDate, state: State) -> HTMLResponse:
    with state.app.database.transaction(readonly=True) as session:
        issue = get_issue(session, edition_date)
        if issue is None:
            raise HTTPException(404, f"there is no edition for {edition_date}")
        html = variant(session, issue).html
    return HTMLResponse(
        personal.fill(html, personal.public_values(state.links)),
        headers={"cache-control": "no-store", "content-security-policy": EDITION_POLICY},
    )


@router.post(
    "/editions/{edition_date}/send",
    response_model=SendResult,
    responses={
        202: {"model": SendResult, "description": "Sending in the background."},
        409: {"model": Problem, "description": "The edition cannot be sent (cancelled)."},
    },
    summary="Send an edition now (building it first if needed); idempotent",
)
def send(
    edition_date: EditionDate,
    state: State,
    response: Response,
    background: BackgroundTasks,
    wait: Annotated[bool, Query(description="Answer when the send is done.")] = False,
    dry_run: Annotated[bool, Query(description="Count the recipients; send nothing.")] = False,
    follow_up: Annotated[
        bool, Query(description="Send a sent edition to those who confirmed after it went out.")
    ] = False,
) -> SendResult:
    app = state.app
    if dry_run:
        plan = pipeline.plan_send(app, edition_date=edition_date)
        return SendResult(
            edition_date=edition_date,
            accepted=False,
            dry_run=True,
            to_enqueue=plan.to_enqueue,
            confirmed=plan.confirmed,
            variants=plan.variants,
        )
    if not wait:
        app.check_can_send()
        plan = pipeline.plan_send(app, edition_date=edition_date)
        if plan.issue_status is IssueStatus.CANCELLED:
            raise HTTPException(409, f"the edition of {edition_date} was cancelled")
        background.add_task(_send_in_background, state, edition_date, follow_up)
        response.status_code = 202
        return SendResult(
            edition_date=edition_date,
            accepted=True,
            to_enqueue=plan.to_enqueue,
            confirmed=plan.confirmed,
            already_sent=plan.issue_status is IssueStatus.SENT and not follow_up,
        )
    outcome = pipeline.send(app, edition_date=edition_date, now=state.clock(), follow_up=follow_up)
    report = outcome.report
    return SendResult(
        edition_date=edition_date,
        accepted=False,
        already_sent=outcome.already_sent,
        enqueued=outcome.enqueued,
        sent=report.sent if report else 0,
        retried=report.retried if report else 0,
        failed=report.failed if report else 0,
        finished=report.finished if report else outcome.already_sent,
    )


def _send_in_background(state: WebState, edition_date: date, follow_up: bool = False) -> None:
    try:
        outcome = pipeline.send(
            state.app, edition_date=edition_date, now=state.clock(), follow_up=follow_up
        )
    except Exception:
        log.exception("the send of %s started from the admin API failed", edition_date)
        return
    report = outcome.report
    log.info(
        "send of %s from the admin API: %s",
        edition_date,
        "already sent" if outcome.already_sent else f"{report.sent if report else 0} sent",
    )


def _require_edition(state: WebState, edition_date: date) -> None:
    with state.app.database.transaction(readonly=True) as session:
        if get_issue(session, edition_date) is None:
            raise HTTPException(404, f"there is no edition for {edition_date}")


@router.post(
    "/editions/{edition_date}/test",
    response_model=list[TestSendResult],
    responses={404: {"model": Problem}, 422: {"model": Problem}},
    summary="Send test copies to a few addresses; the ledger is untouched",
)
def test_send(edition_date: EditionDate, body: TestSend, state: State) -> list[TestSendResult]:
    _require_edition(state, edition_date)
    results = []
    for address in body.to:
        result = pipeline.send_test_copy(state.app, edition_date=edition_date, to=address)
        results.append(
            TestSendResult(
                address=address, accepted=result.outcome.value == "sent", detail=result.detail
            )
        )
    return results


@router.post(
    "/editions/{edition_date}/pause",
    response_model=Control,
    responses={404: {"model": Problem}, 409: {"model": Problem}},
    summary="Hold an edition: workers send none of it until it is resumed",
)
def pause(edition_date: EditionDate, state: State) -> Control:
    _require_edition(state, edition_date)
    changed = pipeline.set_paused(
        state.app, edition_date=edition_date, paused=True, now=state.clock()
    )
    return Control(edition_date=edition_date, changed=changed)


@router.post(
    "/editions/{edition_date}/resume",
    response_model=Control,
    responses={404: {"model": Problem}},
    summary="Lift a pause",
)
def resume(edition_date: EditionDate, state: State) -> Control:
    _require_edition(state, edition_date)
    changed = pipeline.set_paused(
        state.app, edition_date=edition_date, paused=False, now=state.clock()
    )
    return Control(edition_date=edition_date, changed=changed)


@router.post(
    "/editions/{edition_date}/cancel",
    response_model=Control,
    responses={404: {"model": Problem}, 409: {"model": Problem}},
    summary="Cancel an edition for good",
)
def cancel(edition_date: EditionDate, state: State) -> Control:
    _require_edition(state, edition_date)
    dropped = pipeline.cancel_edition(state.app, edition_date=edition_date, now=state.clock())
    return Control(edition_date=edition_date, changed=True, dropped=dropped)


@router.get(
    "/editions/{edition_date}/stats",
    response_model=EditionStatsOut,
    responses={404: {"model": Problem}},
    summary="An edition's deliveries, bounces, complaints and attributed unsubscribes",
)
def edition_stats(edition_date: EditionDate, state: State) -> EditionStatsOut:
    _require_edition(state, edition_date)
    stats = pipeline.edition_stats(state.app, edition_date=edition_date, now=state.clock())
    return EditionStatsOut(
        edition_date=stats.edition_date,
        status=stats.status.value,
        subject=stats.subject,
        deliveries={status.value: count for status, count in stats.deliveries.items()},
        bounced=stats.bounced,
        complaints=stats.complaints,
        unsubscribes=stats.unsubscribes,
        sent_at=stats.sent_at,
    )
