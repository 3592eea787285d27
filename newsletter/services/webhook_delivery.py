"""Outgoing webhooks, the delivery step: post every due message once, record each answer.

Run by the worker between batches (:mod:`newsletter.services.worker`) and by ``newsletter web`` in a
thread. The rules (claims, signing, the retry schedule, disabling) are in
:mod:`newsletter.webhooks.outbound`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx
from sqlalchemy import delete, func, select

from kernel import utcnow
from newsletter.delivery.identity import worker_name
from newsletter.models import WebhookDelivery, WebhookEndpoint, WebhookStatus
from newsletter.services.queued import Transactions
from newsletter.webhooks import outbound

log = logging.getLogger(__name__)

#: How often the delivery step deletes old delivered messages.
PURGE_EVERY = timedelta(hours=1)


@dataclass
class WebhookReport:
    delivered: int = 0
    failed: int = 0
    disabled: list[int] = field(default_factory=list)

    @property
    def attempted(self) -> int:
        return self.delivered + self.failed


@dataclass
class WebhookSender:
    """The delivery step: post every due message once, record each answer as it comes."""

    database: Transactions
    schedule: outbound.RetrySchedule
    failure_limit: int
    batch_size: int
    timeout: float
    lease: timedelta = timedelta(minutes=5)
    #: How long a delivered message is kept.
    keep: timedelta = timedelta(days=30)
    clock: Callable[[], datetime] = utcnow
    owner: str = field(default_factory=lambda: f"{worker_name()}:{uuid.uuid4().hex[:8]}")
    _client: httpx.Client | None = None
    _purged_at: datetime | None = None

    def _http(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(timeout=self.timeout, follow_redirects=False)
        return self._client

    def deliver_due(self) -> WebhookReport:
        """One pass over what is due now (at most one batch)."""
        report = WebhookReport()
        self._purge()
        now = self.clock()
        with self.database.transaction(readonly=True) as session:
            if not outbound.anything_due(session, now=now):
                return report  # no write transaction (SQLite's lock) for an empty queue
        with self.database.transaction() as session:
            claimed = outbound.claim(
                session,
                owner=self.owner,
                now=now,
                lease=self.lease,
                limit=self.batch_size,
            )
        failed_endpoints: set[int] = set()
        skipped: list[int] = []
        for message in claimed:
            if message.endpoint_id in failed_endpoints:
                skipped.append(message.id)  # its receiver just failed: wait for its backoff
                continue
            attempt = outbound.post(
                self._http(), message.url, message.secret, message.message_id, message.payload
            )
            with self.database.transaction() as session:
                disabled = outbound.record(
                    session,
                    message,
                    attempt,
                    owner=self.owner,
                    now=self.clock(),
                    schedule=self.schedule,
                    failure_limit=self.failure_limit,
                )
            if attempt.delivered:
                report.delivered += 1
                continue
            report.failed += 1
            failed_endpoints.add(message.endpoint_id)
            log.warning(
                "webhook %s to endpoint %d failed: %s",
                message.message_id,
                message.endpoint_id,
                attempt.error,
            )
            if disabled:
                report.disabled.append(message.endpoint_id)
                log.warning(
                    "webhook endpoint %d disabled after %d failed attempts in a row",
                    message.endpoint_id,
                    self.failure_limit,
                )
        if skipped:
            with self.database.transaction() as session:
                outbound.release(session, skipped, owner=self.owner)
        return report

    def _purge(self) -> None:
        """Delete the delivered messages older than ``keep``, at most once an hour."""
        now = self.clock()
        if self._purged_at is not None and now - self._purged_at < PURGE_EVERY:
            return
        self._purged_at = now
        with self.database.transaction() as session:
            session.execute(
                delete(WebhookDelivery).where(
                    WebhookDelivery.status == WebhookStatus.DELIVERED,
                    WebhookDelivery.delivered_at < now - self.keep,
                )
            )

    def next_due(self) -> datetime | None:
        """When the next message may be tried (None: nothing waits for an enabled endpoint)."""
        with self.database.transaction(readonly=True) as session:
            rows = session.execute(
                select(WebhookEndpoint.retry_at, func.min(WebhookDelivery.next_attempt_at))
                .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
                .where(
                    WebhookDelivery.status == WebhookStatus.PENDING,
                    WebhookEndpoint.enabled.is_(True),
                )
                .group_by(WebhookEndpoint.id, WebhookEndpoint.retry_at)
            ).all()
        times = [
            max(outbound.aware(due), retry_at or outbound.aware(due))
            for retry_at, due in rows
            if due is not None
        ]
        return min(times, default=None)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
