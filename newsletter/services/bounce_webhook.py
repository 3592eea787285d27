"""Bounce and complaint events a sending provider posts: the use case behind ``/api/webhooks/bounces``.

Each event is read by :mod:`newsletter.delivery.provider_events` and its reports are applied by
:func:`newsletter.delivery.bounces.apply_reports`, in one transaction, exactly as the reports of a
bounce mailbox are: a hard bounce suppresses the address as ``bounced`` and fails the delivery, a
complaint suppresses it as ``complained``, a soft bounce is counted. A redelivered event finds its
rows in ``bounces`` and changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from newsletter.delivery.bounces import BounceSummary, apply_reports
from newsletter.delivery.provider_events import (
    ProviderEvent,
    SubscriptionRequest,
    check_subscribe_url,
    confirm_subscription,
    read_event,
)
from newsletter.errors import ReportError, UsageError
from newsletter.services.queued import Transactions

log = logging.getLogger(__name__)

#: What ``record_report`` answered, in the words of a webhook's reply.
OUTCOMES = {
    "suppressed": "suppressed",
    "counted": "counted",
    "unknown": "ignored",
    "seen": "already-processed",
}


@dataclass(frozen=True, slots=True)
class RecipientOutcome:
    recipient: str
    kind: str
    #: suppressed, counted (a soft bounce, or an address already suppressed), ignored (no
    #: subscriber has the address) or already-processed (a redelivery).
    outcome: str


@dataclass(frozen=True, slots=True)
class Receipt:
    """What a posted event did."""

    provider: str
    event_id: str
    #: processed, already-processed, ignored, subscription-confirmed or subscription-pending
    result: str
    recipients: tuple[RecipientOutcome, ...] = ()
    note: str | None = None


def receive(
    database: Transactions,
    body: bytes,
    *,
    content_type: str,
    confirm_sns: bool,
    now: datetime,
    confirm: Callable[[str], None] = confirm_subscription,
) -> Receipt:
    """Apply one posted event; :class:`~newsletter.errors.ReportError` when it cannot be read."""
    try:
        event = read_event(body, content_type)
    except ReportError as exc:
        # A provider does not retry a 4xx: the server log is where the operator learns of it.
        log.warning("bounce webhook: refused a %d-byte body: %s", len(body), exc.message)
        raise
    if isinstance(event, SubscriptionRequest):
        return _subscription(event, confirm_sns=confirm_sns, confirm=confirm)
    return _apply(database, event, source=f"webhook:{event.provider}", now=now)


def receive_file(database: Transactions, path: Path, *, now: datetime) -> Receipt:
    """Apply one saved event or report message (a ``.json`` or ``.eml`` file), as if posted."""
    try:
        body = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    json_like = body.lstrip()[:1] == b"{"
    event = read_event(body, "application/json" if json_like else "message/rfc822")
    if isinstance(event, SubscriptionRequest):
        return _subscription(event, confirm_sns=False, confirm=confirm_subscription)
    return _apply(database, event, source=f"file:{event.provider}", now=now)


def _subscription(
    request: SubscriptionRequest, *, confirm_sns: bool, confirm: Callable[[str], None]
) -> Receipt:
    if not confirm_sns:
        log.warning(
            "Amazon SNS asks to confirm the subscription of the bounce webhook to %s: "
            "open this URL once to confirm it (or set NEWSLETTER_WEBHOOK_CONFIRM_SNS=true): %s",
            request.topic_arn,
            request.subscribe_url,
        )
        return Receipt(
            "ses",
            f"sns:{request.message_id}",
            "subscription-pending",
            note=(
                f"open the SubscribeURL (in the server log) to confirm the subscription to "
                f"{request.topic_arn}"
            ),
        )
    confirm(check_subscribe_url(request.subscribe_url))
    log.info("confirmed the Amazon SNS subscription to %s", request.topic_arn)
    return Receipt(
        "ses",
        f"sns:{request.message_id}",
        "subscription-confirmed",
        note=f"subscribed to {request.topic_arn}",
    )


def _apply(database: Transactions, event: ProviderEvent, *, source: str, now: datetime) -> Receipt:
    if not event.reports:
        return Receipt(event.provider, event.event_id, "ignored", note=event.note)
    summary = BounceSummary()
    with database.transaction() as session:
        outcomes = apply_reports(session, event.reports, source=source, now=now, summary=summary)
    recipients = tuple(
        RecipientOutcome(report.recipient, report.kind.value, OUTCOMES.get(outcome, outcome))
        for report, outcome in zip(event.reports, outcomes, strict=True)
    )
    said = {item.outcome for item in recipients}
    if said == {"already-processed"}:
        result = "already-processed"
    elif said == {"ignored"}:
        result = "ignored"
    else:
        result = "processed"
    note = "no subscriber has this address" if result == "ignored" else None
    return Receipt(event.provider, event.event_id, result, recipients, note)
