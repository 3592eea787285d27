"""``/api/editions``: the editions, their delivery counts, build, preview, send, test copies,
pause, resume, cancel and numbers."""

from __future__ import annotations

import logging
from datetime import date
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, HTTPException, Query, Response
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse

from newsletter import personal
from newsletter.models import IssueStatus
from newsletter.services import archive
from newsletter.services.archive import EditionSummary
from newsletter.web.api.schemas import (
    BuildOut,
    Control,
    EditionOut,
    EditionStatsOut,
    Problem,
    SendResult,
    TestSend,
    TestSendResult,
)
from newsletter.web.security import EDITION_POLICY
from newsletter.web.state import State, WebState

log = logging.getLogger(__name__)

router = APIRouter()


def _edition_out(state: WebState, edition: EditionSummary) -> EditionOut:
    return EditionOut.of(edition, web_url=state.links.archive(edition.edition_date))


@router.get(
    "/editions", response_model=list[EditionOut], summary="Editions with their delivery counts"
)
def editions(state: State, limit: Annotated[int, Query(ge=1, le=365)] = 30) -> list[EditionOut]:
    found = archive.edition_summaries(state.database, limit=limit)
    return [_edition_out(state, edition) for edition in found]


EditionDate = Annotated[date, PathParam(description="YYYY-MM-DD")]


@router.get(
    "/editions/{edition_date}",
    response_model=EditionOut,
    responses={404: {"model": Problem}},
    summary="One edition's state and delivery counts",
)
def edition(edition_date: EditionDate, state: State) -> EditionOut:
    found = archive.edition_summary(state.database, edition_date)
    if found is None:
        raise HTTPException(404, f"there is no edition for {edition_date}")
    return _edition_out(state, found)


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
    html = archive.edition_html(state.database, edition_date)
    if html is None:
        raise HTTPException(404, f"there is no edition for {edition_date}")
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
    controls = state.editions
    if dry_run:
        plan = controls.plan_send(edition_date)
        return SendResult(
            edition_date=edition_date,
            accepted=False,
            dry_run=True,
            to_enqueue=plan.to_enqueue,
            confirmed=plan.confirmed,
            variants=plan.variants,
        )
    if not wait:
        controls.check_can_send()
        plan = controls.plan_send(edition_date)
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
    outcome = controls.send(edition_date, state.clock(), follow_up)
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


@router.post(
    "/editions/{edition_date}/build",
    response_model=BuildOut,
    responses={
        409: {
            "model": Problem,
            "description": "Subscribers received the edition (or are receiving it): not rebuilt.",
        },
        422: {"model": Problem},
    },
    summary="Build (or rebuild) an edition from the stored articles and prices",
)
def build(
    edition_date: EditionDate,
    state: State,
    explain: Annotated[
        bool, Query(description="Also say, for each candidate story, why it was taken or left.")
    ] = False,
) -> BuildOut:
    result = state.editions.build(edition_date, state.clock(), explain)
    return BuildOut.of(result, explain=explain)


def _send_in_background(state: WebState, edition_date: date, follow_up: bool = False) -> None:
    try:
        outcome = state.editions.send(edition_date, state.clock(), follow_up)
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
    if not archive.edition_exists(state.database, edition_date):
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
        result = state.editions.send_test_copy(edition_date, address)
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
    changed = state.editions.set_paused(edition_date, True, state.clock())
    return Control(edition_date=edition_date, changed=changed)


@router.post(
    "/editions/{edition_date}/resume",
    response_model=Control,
    responses={404: {"model": Problem}},
    summary="Lift a pause",
)
def resume(edition_date: EditionDate, state: State) -> Control:
    _require_edition(state, edition_date)
    changed = state.editions.set_paused(edition_date, False, state.clock())
    return Control(edition_date=edition_date, changed=changed)


@router.post(
    "/editions/{edition_date}/cancel",
    response_model=Control,
    responses={404: {"model": Problem}, 409: {"model": Problem}},
    summary="Cancel an edition for good",
)
def cancel(edition_date: EditionDate, state: State) -> Control:
    _require_edition(state, edition_date)
    dropped = state.editions.cancel(edition_date, state.clock())
    return Control(edition_date=edition_date, changed=True, dropped=dropped)


@router.get(
    "/editions/{edition_date}/stats",
    response_model=EditionStatsOut,
    responses={404: {"model": Problem}},
    summary="An edition's deliveries, bounces, complaints and attributed unsubscribes",
)
def edition_stats(edition_date: EditionDate, state: State) -> EditionStatsOut:
    _require_edition(state, edition_date)
    stats = state.editions.stats(edition_date, state.clock())
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
