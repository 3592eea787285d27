"""What the delivery side exposes to Prometheus, read from the database at scrape time.

Read from the ledger rather than counted in memory, so the figures hold for every worker on every
host and survive restarts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.models import Delivery, DeliveryStatus, Issue, IssueStatus, SourceState

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Gauge:
    name: str
    help: str
    values: dict[Labels, float]


def delivery_gauges(session: Session, *, now: datetime) -> list[Gauge]:
    by_status: dict[Labels, float] = dict.fromkeys(
        ((("status", status.value),) for status in DeliveryStatus), 0.0
    )
    for status, count in session.execute(
        select(Delivery.status, func.count()).group_by(Delivery.status)
    ):
        by_status[(("status", status.value),)] = float(count)
    due = session.scalar(
        select(func.count())
        .select_from(Delivery)
        .join(Issue, Issue.id == Delivery.issue_id)
        .where(
            Delivery.status == DeliveryStatus.QUEUED,
            Delivery.not_before <= now,
            Issue.status == IssueStatus.SENDING,
        )
    )
    recent = session.scalar(
        select(func.count())
        .select_from(Delivery)
        .where(
            Delivery.status == DeliveryStatus.SENT, Delivery.sent_at >= now - timedelta(minutes=5)
        )
    )
    last_sent = session.scalar(
        select(func.max(Issue.sent_at)).where(Issue.status == IssueStatus.SENT)
    )
    failing: dict[Labels, float] = {
        (("source", key),): float(failures)
        for key, failures in session.execute(select(SourceState.key, SourceState.failures))
    }
    return [
        Gauge("newsletter_deliveries", "Deliveries in the ledger, by status.", by_status),
        Gauge(
            "newsletter_queue_due",
            "Deliveries queued and due now (the backlog).",
            {(): float(due or 0)},
        ),
        Gauge(
            "newsletter_send_rate_per_second",
            "Messages accepted per second over the last 5 minutes, all workers together.",
            {(): (recent or 0) / 300.0},
        ),
        Gauge(
            "newsletter_last_edition_sent_timestamp_seconds",
            "When the last edition finished sending (Unix time; 0: never).",
            {(): last_sent.timestamp() if last_sent else 0.0},
        ),
        Gauge(
            "newsletter_source_consecutive_failures",
            "Fetches in a row that failed, by source (0: the last one worked).",
            failing,
        ),
    ]
