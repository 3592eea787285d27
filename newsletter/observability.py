"""What the delivery side exposes to Prometheus, read from the database at scrape time.

Read from the database rather than counted in memory, so the figures hold for every worker on every
host and survive restarts; and read cheaply, so a scrape costs the same at any ledger size: the counts
by status come from ``delivery_counts`` (kept by triggers), the backlog from the partial index of
queued rows, the send rate from the index on ``sent_at``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, literal_column, select
from sqlalchemy.orm import Session

from newsletter.models import (
    Delivery,
    DeliveryCount,
    DeliveryStatus,
    Issue,
    IssueStatus,
    SourceState,
)
from subscribers.model import Subscriber

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Gauge:
    name: str
    help: str
    values: dict[Labels, float]


def subscriber_gauges(session: Session) -> list[Gauge]:
    """Subscribers by status and paused: for the admin's scrape only (a public count would tell
    whether a signup was of a new address)."""
    by_status: dict[Labels, float] = {
        (("status", status.value),): float(count)
        for status, count in session.execute(
            select(Subscriber.status, func.count()).group_by(Subscriber.status)
        )
    }
    paused = session.scalar(
        select(func.count()).select_from(Subscriber).where(Subscriber.paused.is_(True))
    )
    return [
        Gauge("newsletter_subscribers", "Subscribers by status.", by_status),
        Gauge("newsletter_subscribers_paused", "Subscribers who paused.", {(): float(paused or 0)}),
    ]


def delivery_gauges(session: Session, *, now: datetime) -> list[Gauge]:
    by_status: dict[Labels, float] = dict.fromkeys(
        ((("status", status.value),) for status in DeliveryStatus), 0.0
    )
    # The counts table the triggers keep (a few rows an edition), never the ledger itself.
    for status, count in session.execute(
        select(DeliveryCount.status, func.sum(DeliveryCount.count)).group_by(DeliveryCount.status)
    ):
        by_status[(("status", status),)] = float(count or 0)
    # The literal status lets both databases use the partial index of queued rows.
    sending = select(Issue.id).where(Issue.status == IssueStatus.SENDING)
    due = session.scalar(
        select(func.count())
        .select_from(Delivery)
        .where(
            Delivery.issue_id.in_(sending),
            Delivery.status == literal_column(f"'{DeliveryStatus.QUEUED.value}'"),
            Delivery.not_before <= now,
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
