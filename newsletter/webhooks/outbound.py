"""Posting the queued messages: claim what is due, sign and post it, record the answer.

Per the Standard Webhooks specification each message is a POST of its JSON body with the headers
``webhook-id`` (the message id, the same on every retry: receivers drop one they have seen),
``webhook-timestamp`` (the attempt's Unix time) and ``webhook-signature`` (``v1,`` and the
base64 HMAC-SHA256 of ``id.timestamp.body`` under the endpoint's ``whsec_`` secret, made by the
``standardwebhooks`` package). Any 2xx answer delivers the message; anything else (another status,
a timeout, a refused connection) is a failure, retried later.

Two backoffs work together. A failed message waits before its next attempt (the retry schedule:
doubling up to a cap, less a random part), and so does its endpoint: while a receiver is down, at
most one attempt reaches it per step of the schedule, however many messages wait for it. After
``failure_limit`` failed attempts in a row the endpoint is disabled with the reason; its messages
stay queued. Claims hold a lease, so several workers share the queue and a worker that dies only
delays its batch; a message posted just before a crash is posted again with the same id.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.orm import Session
from standardwebhooks import Webhook

from newsletter import __version__
from newsletter.models import WebhookDelivery, WebhookEndpoint, WebhookStatus

#: How much of an answer's body is kept as the reason of a failure.
ERROR_BODY_CHARS = 200
USER_AGENT = f"newsletter-webhooks/{__version__}"


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    """Wait ``first`` after the first failure, doubling after each one up to ``cap``; the random
    ``jitter`` share of the wait is taken off, so that retries of many messages spread out."""

    first: timedelta
    cap: timedelta
    jitter: float = 0.2

    def delay(self, failures: int, rng: random.Random | None = None) -> timedelta:
        exponent = min(max(failures, 1) - 1, 40)
        seconds = min(self.first.total_seconds() * 2**exponent, self.cap.total_seconds())
        if self.jitter:
            seconds *= 1 - self.jitter * (rng or random).random()
        return timedelta(seconds=seconds)


@dataclass(frozen=True, slots=True)
class Claimed:
    """A message under this worker's lease, with where it goes."""

    id: int
    endpoint_id: int
    url: str
    secret: str
    message_id: str
    payload: str


@dataclass(frozen=True, slots=True)
class Attempt:
    """How one post went: ``status`` is the HTTP status (None: no answer), ``error`` why it failed."""

    status: int | None
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.error is None and self.status is not None and 200 <= self.status < 300


def aware(value: datetime) -> datetime:
    """SQLite gives aggregates and RETURNING naive UTC times: make them aware."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _due(now: datetime) -> tuple[ColumnElement[bool], ...]:
    """The messages that may be claimed at ``now``."""
    open_endpoints = select(WebhookEndpoint.id).where(
        WebhookEndpoint.enabled.is_(True),
        or_(WebhookEndpoint.retry_at.is_(None), WebhookEndpoint.retry_at <= now),
    )
    return (
        WebhookDelivery.status == WebhookStatus.PENDING,
        WebhookDelivery.next_attempt_at <= now,
        or_(WebhookDelivery.lease_until.is_(None), WebhookDelivery.lease_until < now),
        WebhookDelivery.endpoint_id.in_(open_endpoints),
    )


def anything_due(session: Session, *, now: datetime) -> bool:
    return (
        session.execute(select(WebhookDelivery.id).where(*_due(now)).limit(1)).first() is not None
    )


def claim(
    session: Session, *, owner: str, now: datetime, lease: timedelta, limit: int
) -> list[Claimed]:
    """Take up to ``limit`` due messages of endpoints that may be tried now, oldest due first."""
    due = (
        select(WebhookDelivery.id)
        .where(*_due(now))
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    taken = session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(due))
        .values(lease_owner=owner, lease_until=now + lease)
        .returning(WebhookDelivery.id)
        .execution_options(synchronize_session=False)
    ).all()
    if not taken:
        return []
    rows = session.execute(
        select(
            WebhookDelivery.id,
            WebhookDelivery.endpoint_id,
            WebhookDelivery.message_id,
            WebhookDelivery.payload,
            WebhookEndpoint.url,
            WebhookEndpoint.secret,
        )
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(WebhookDelivery.id.in_([row.id for row in taken]))
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
    ).all()
    return [
        Claimed(
            id=row.id,
            endpoint_id=row.endpoint_id,
            url=row.url,
            secret=row.secret,
            message_id=row.message_id,
            payload=row.payload,
        )
        for row in rows
    ]


def headers(
    secret: str, message_id: str, payload: str, *, at: float | None = None
) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt, signed at ``at`` (default: now)."""
    moment = datetime.fromtimestamp(time.time() if at is None else at, tz=UTC)
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, moment, payload),
    }


def post(client: httpx.Client, url: str, secret: str, message_id: str, payload: str) -> Attempt:
    """Post one message, signed now; the answer's body is read only for a failure's reason."""
    try:
        with client.stream(
            "POST", url, content=payload.encode(), headers=headers(secret, message_id, payload)
        ) as response:
            if 200 <= response.status_code < 300:
                return Attempt(response.status_code)
            body = b""
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) >= ERROR_BODY_CHARS:
                    break
            text = " ".join(body.decode("utf-8", "replace").split())[:ERROR_BODY_CHARS]
            reason = f"HTTP {response.status_code}" + (f": {text}" if text else "")
            return Attempt(response.status_code, reason)
    except httpx.TimeoutException:
        return Attempt(None, f"no answer within the timeout from {url}")
    except httpx.HTTPError as exc:
        return Attempt(None, f"{type(exc).__name__}: {exc}"[:500])


def record(
    session: Session,
    message: Claimed,
    attempt: Attempt,
    *,
    owner: str,
    now: datetime,
    schedule: RetrySchedule,
    failure_limit: int,
) -> bool:
    """Write an attempt's outcome for the message and its endpoint; True if it disabled the endpoint.

    Nothing is written for a message whose lease this worker lost meanwhile (another worker has it).
    """
    if attempt.delivered:
        changed = session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == message.id, WebhookDelivery.lease_owner == owner)
            .values(
                status=WebhookStatus.DELIVERED,
                attempts=WebhookDelivery.attempts + 1,
                last_attempt_at=now,
                last_status=attempt.status,
                last_error=None,
                delivered_at=now,
                lease_owner=None,
                lease_until=None,
            )
            .returning(WebhookDelivery.id)
            .execution_options(synchronize_session=False)
        ).first()
        if changed is not None:
            session.execute(
                update(WebhookEndpoint)
                .where(WebhookEndpoint.id == message.endpoint_id)
                .values(consecutive_failures=0, retry_at=None, last_success_at=now)
                .execution_options(synchronize_session=False)
            )
        return False
    row = session.execute(
        select(WebhookDelivery.attempts).where(
            WebhookDelivery.id == message.id, WebhookDelivery.lease_owner == owner
        )
    ).first()
    if row is None:
        return False
    attempts = row.attempts + 1
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == message.id)
        .values(
            attempts=attempts,
            last_attempt_at=now,
            last_status=attempt.status,
            last_error=attempt.error,
            next_attempt_at=now + schedule.delay(attempts),
            lease_owner=None,
            lease_until=None,
        )
        .execution_options(synchronize_session=False)
    )
    endpoint = session.get(WebhookEndpoint, message.endpoint_id, with_for_update=True)
    if endpoint is None:
        return False
    endpoint.consecutive_failures += 1
    endpoint.last_error = attempt.error
    endpoint.retry_at = now + schedule.delay(endpoint.consecutive_failures)
    if endpoint.enabled and endpoint.consecutive_failures >= failure_limit:
        endpoint.enabled = False
        endpoint.auto_disabled = True
        endpoint.disabled_at = now
        endpoint.disabled_reason = (
            f"disabled after {endpoint.consecutive_failures} failed attempts in a row; "
            f"last: {attempt.error}"
        )[:2000]
        return True
    return False


def release(session: Session, ids: Sequence[int], *, owner: str) -> None:
    """Give back claimed messages that were not attempted (their endpoint just failed)."""
    if ids:
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(ids), WebhookDelivery.lease_owner == owner)
            .values(lease_owner=None, lease_until=None)
            .execution_options(synchronize_session=False)
        )
