"""The events an endpoint can receive, and :func:`emit`, which queues one in the caller's transaction.

An event is queued in the same transaction as the change it reports: if that change rolls back, no
message goes out; if it commits, the message is in the queue and will be delivered, whatever
happens to the process afterwards. Payloads carry what a receiver needs to act and nothing secret:
a subscriber is their id and address only (no name, no IP, no token or personal link).
"""

from __future__ import annotations

import enum
import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from kernel import utcnow
from newsletter.models import Issue, WebhookDelivery, WebhookEndpoint, WebhookStatus
from subscribers.model import Subscriber


class WebhookEvent(enum.StrEnum):
    """The events an endpoint may ask for, in the order the docs list them."""

    SUBSCRIBER_CONFIRMED = "subscriber.confirmed"
    SUBSCRIBER_UNSUBSCRIBED = "subscriber.unsubscribed"
    SUBSCRIBER_SUPPRESSED = "subscriber.suppressed"
    EDITION_SENT = "edition.sent"
    DELIVERY_BOUNCED = "delivery.bounced"
    DELIVERY_COMPLAINED = "delivery.complained"


SUBSCRIBER_CONFIRMED = WebhookEvent.SUBSCRIBER_CONFIRMED.value
SUBSCRIBER_UNSUBSCRIBED = WebhookEvent.SUBSCRIBER_UNSUBSCRIBED.value
SUBSCRIBER_SUPPRESSED = WebhookEvent.SUBSCRIBER_SUPPRESSED.value
EDITION_SENT = WebhookEvent.EDITION_SENT.value
DELIVERY_BOUNCED = WebhookEvent.DELIVERY_BOUNCED.value
DELIVERY_COMPLAINED = WebhookEvent.DELIVERY_COMPLAINED.value

#: Every event type, in the documented order.
EVENT_TYPES: tuple[str, ...] = tuple(event.value for event in WebhookEvent)

#: The type of the message ``newsletter webhooks test`` posts (never queued, never subscribed to).
TEST_EVENT = "webhook.test"


def new_message_id() -> str:
    """A ``webhook-id``: unique per event, the same for each endpoint and on every retry."""
    return f"msg_{uuid.uuid4().hex}"


def payload(event_type: str, data: Mapping[str, Any], *, at: datetime) -> str:
    """The JSON body of a message: ``{"type", "timestamp", "data"}`` (Standard Webhooks' shape)."""
    body = {"type": event_type, "timestamp": at.isoformat(), "data": dict(data)}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def emit(
    session: Session,
    event_type: str,
    data: Mapping[str, Any],
    *,
    subscriber_id: int | None = None,
    now: datetime | None = None,
) -> int:
    """Queue ``event_type`` for every endpoint that receives it; return how many rows it queued.

    Endpoints an operator disabled get nothing; endpoints disabled after failures keep receiving
    rows (delivered once they are enabled again). ``subscriber_id`` marks the rows about a
    subscriber, so that erasing them can drop the queue's copies of their address.
    """
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event {event_type!r}")
    endpoints = session.execute(
        select(WebhookEndpoint.id, WebhookEndpoint.events).where(
            or_(WebhookEndpoint.enabled.is_(True), WebhookEndpoint.auto_disabled.is_(True))
        )
    ).all()
    targets = [row.id for row in endpoints if event_type in (row.events or ())]
    if not targets:
        return 0
    now = now or utcnow()
    body = payload(event_type, data, at=now)
    message_id = new_message_id()
    session.add_all(
        WebhookDelivery(
            endpoint_id=endpoint_id,
            message_id=message_id,
            event_type=event_type,
            payload=body,
            subscriber_id=subscriber_id,
            status=WebhookStatus.PENDING,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        for endpoint_id in targets
    )
    session.flush()
    return len(targets)


# The payloads' parts, one definition each.


def subscriber_data(subscriber: Subscriber) -> dict[str, Any]:
    """What a message says about a subscriber: their id and address, nothing else."""
    return {"id": subscriber.id, "email": subscriber.email}


def emit_about(
    session: Session,
    event_type: str,
    subscriber: Subscriber | int,
    *,
    now: datetime | None = None,
    **data: Any,
) -> int:
    """Queue an event about one subscriber (a row or its id): ``{"subscriber": {"id", "email"},
    **data}``. Nothing for a subscriber that is gone."""
    if isinstance(subscriber, int):
        found = session.get(Subscriber, subscriber)
        if found is None:
            return 0
        subscriber = found
    return emit(
        session,
        event_type,
        {"subscriber": subscriber_data(subscriber), **data},
        subscriber_id=subscriber.id,
        now=now,
    )


def edition_data(issue: Issue) -> dict[str, Any]:
    return {"id": issue.id, "date": issue.edition_date.isoformat(), "subject": issue.subject}
