"""Outgoing webhooks, the operator's side: endpoints (add, list, show the secret, enable, disable,
change, remove) and a test message.

The events themselves are queued where they happen, in the same transaction
(:func:`newsletter.webhooks.events.emit`); :mod:`newsletter.services.webhook_delivery` posts them,
with the rules of :mod:`newsletter.webhooks.outbound`. See docs/webhooks.md.
"""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import httpx
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from newsletter.errors import UnknownEndpoint, UsageError
from newsletter.models import WebhookDelivery, WebhookEndpoint, WebhookStatus
from newsletter.services.queued import Transactions
from newsletter.webhooks import outbound
from newsletter.webhooks.events import EVENT_TYPES, TEST_EVENT, new_message_id, payload

log = logging.getLogger(__name__)

URL_MAX = 2000
DESCRIPTION_MAX = 200


def new_secret() -> str:
    """A signing secret in the Standard Webhooks form: ``whsec_`` and base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def check_url(url: str) -> str:
    """An http(s) URL with a host, or :class:`UsageError` saying what is wrong."""
    url = url.strip()
    if not url or len(url) > URL_MAX or any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise UsageError(
            f"the webhook URL {url[:100]!r} is empty, too long or contains spaces",
            hint="give the receiver's full URL, e.g. https://hooks.example.com/newsletter",
        )
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        raise UsageError(f"{url[:100]!r} is not a URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise UsageError(
            f"the webhook URL {url[:100]!r} is not an http:// or https:// URL with a host",
            hint="give the receiver's full URL, e.g. https://hooks.example.com/newsletter",
        )
    return url


def check_events(events: Iterable[str] | None) -> list[str]:
    """The event types asked for, each once, in the documented order; all of them for None."""
    if events is None:
        return list(EVENT_TYPES)
    chosen = {event.strip() for event in events if event.strip()}
    unknown = sorted(chosen - set(EVENT_TYPES))
    if unknown:
        raise UsageError(
            f"unknown webhook event {', '.join(unknown)}",
            hint=f"choose among {', '.join(EVENT_TYPES)}",
        )
    if not chosen:
        raise UsageError("no webhook event chosen", hint=f"choose among {', '.join(EVENT_TYPES)}")
    return [event for event in EVENT_TYPES if event in chosen]


def check_description(description: str | None) -> str:
    description = (description or "").strip()
    if len(description) > DESCRIPTION_MAX or any(ord(ch) < 32 for ch in description):
        raise UsageError(
            f"the description must be one line of at most {DESCRIPTION_MAX} characters"
        )
    return description


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An endpoint as the operator sees it (never its secret), with the state of its queue."""

    id: int
    url: str
    description: str
    events: list[str]
    enabled: bool
    disabled_at: datetime | None
    disabled_reason: str | None
    consecutive_failures: int
    retry_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    created_at: datetime
    pending: int = 0
    delivered: int = 0
    oldest_pending_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Created:
    endpoint: Endpoint
    #: Shown once here; ``secret(id)`` gives it again to the operator.
    secret: str


def _view(
    row: WebhookEndpoint, counts: dict[tuple[int, str], tuple[int, datetime | None]]
) -> Endpoint:
    pending, oldest = counts.get((row.id, WebhookStatus.PENDING.value), (0, None))
    delivered, _ = counts.get((row.id, WebhookStatus.DELIVERED.value), (0, None))
    return Endpoint(
        id=row.id,
        url=row.url,
        description=row.description,
        events=list(row.events or ()),
        enabled=row.enabled,
        disabled_at=row.disabled_at,
        disabled_reason=row.disabled_reason,
        consecutive_failures=row.consecutive_failures,
        retry_at=row.retry_at,
        last_success_at=row.last_success_at,
        last_error=row.last_error,
        created_at=row.created_at,
        pending=pending,
        delivered=delivered,
        oldest_pending_at=oldest,
    )


def _counts(
    session: Session, ids: Sequence[int]
) -> dict[tuple[int, str], tuple[int, datetime | None]]:
    if not ids:
        return {}
    rows = session.execute(
        select(
            WebhookDelivery.endpoint_id,
            WebhookDelivery.status,
            func.count(),
            func.min(WebhookDelivery.created_at),
        )
        .where(WebhookDelivery.endpoint_id.in_(ids))
        .group_by(WebhookDelivery.endpoint_id, WebhookDelivery.status)
    ).all()
    result: dict[tuple[int, str], tuple[int, datetime | None]] = {}
    for endpoint_id, status, count, oldest in rows:
        result[(endpoint_id, WebhookStatus(status).value)] = (
            int(count),
            None if oldest is None else outbound.aware(oldest),
        )
    return result


def add(
    database: Transactions,
    *,
    url: str,
    events: Iterable[str] | None,
    description: str | None = None,
    now: datetime,
) -> Created:
    """Register an endpoint, enabled, with a new secret."""
    row = WebhookEndpoint(
        url=check_url(url),
        description=check_description(description),
        events=check_events(events),
        secret=new_secret(),
        enabled=True,
        auto_disabled=False,
        consecutive_failures=0,
        created_at=now,
    )
    with database.transaction() as session:
        session.add(row)
        session.flush()
        return Created(_view(row, {}), row.secret)


def endpoints(database: Transactions) -> list[Endpoint]:
    """Every endpoint in id order, with its queue."""
    with database.transaction(readonly=True) as session:
        rows = session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id)).all()
        counts = _counts(session, [row.id for row in rows])
        return [_view(row, counts) for row in rows]


def _get(session: Session, endpoint_id: int, *, lock: bool = False) -> WebhookEndpoint:
    row = session.get(WebhookEndpoint, endpoint_id, with_for_update=lock or None)
    if row is None:
        raise UnknownEndpoint(
            f"no webhook endpoint has the id {endpoint_id}",
            hint="'newsletter webhooks list' shows them",
        )
    return row


def endpoint(database: Transactions, endpoint_id: int) -> Endpoint:
    with database.transaction(readonly=True) as session:
        row = _get(session, endpoint_id)
        return _view(row, _counts(session, [row.id]))


def secret(database: Transactions, endpoint_id: int) -> str:
    """The endpoint's signing secret, for the operator who sets up the receiver."""
    with database.transaction(readonly=True) as session:
        return _get(session, endpoint_id).secret


def change(
    database: Transactions,
    endpoint_id: int,
    *,
    url: str | None = None,
    events: Iterable[str] | None = None,
    description: str | None = None,
    enabled: bool | None = None,
    now: datetime,
) -> Endpoint:
    """Change what is given. Enabling clears the failures and sends what waits at once; disabling
    by hand stops queueing events for the endpoint (what is queued stays)."""
    with database.transaction() as session:
        row = _get(session, endpoint_id, lock=True)
        if url is not None:
            row.url = check_url(url)
        if events is not None:
            row.events = check_events(events)
        if description is not None:
            row.description = check_description(description)
        if enabled is True and not row.enabled:
            row.enabled = True
            row.auto_disabled = False
            row.disabled_at = None
            row.disabled_reason = None
            row.consecutive_failures = 0
            row.retry_at = None
            session.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.endpoint_id == row.id,
                    WebhookDelivery.status == WebhookStatus.PENDING,
                )
                .values(next_attempt_at=now)
                .execution_options(synchronize_session=False)
            )
        elif enabled is False and (row.enabled or row.auto_disabled):
            row.enabled = False
            row.auto_disabled = False
            row.disabled_at = now
            row.disabled_reason = "disabled by an operator"
        session.flush()
        return _view(row, _counts(session, [row.id]))


def remove(database: Transactions, endpoint_id: int) -> int:
    """Delete an endpoint and its queue; return how many messages were still pending."""
    with database.transaction() as session:
        row = _get(session, endpoint_id, lock=True)
        pending = session.scalar(
            select(func.count()).where(
                WebhookDelivery.endpoint_id == row.id,
                WebhookDelivery.status == WebhookStatus.PENDING,
            )
        )
        session.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == row.id))
        session.delete(row)
        return int(pending or 0)


@dataclass(frozen=True, slots=True)
class TestResult:
    message_id: str
    status: int | None
    error: str | None

    @property
    def delivered(self) -> bool:
        return outbound.Attempt(self.status, self.error).delivered


def send_test(
    database: Transactions, endpoint_id: int, *, timeout: float, now: datetime
) -> TestResult:
    """Post a signed ``webhook.test`` message now, whatever the endpoint's state; record nothing."""
    with database.transaction(readonly=True) as session:
        row = _get(session, endpoint_id)
        url, key = row.url, row.secret
    message_id = new_message_id()
    body = payload(TEST_EVENT, {"endpoint_id": endpoint_id}, at=now)
    with httpx.Client(timeout=timeout, follow_redirects=False) as client:
        attempt = outbound.post(client, url, key, message_id, body)
    return TestResult(message_id, attempt.status, attempt.error)
