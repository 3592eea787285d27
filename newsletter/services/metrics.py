"""The figures a /metrics scrape reads from the database (subscribers, editions, the ledger, sources),
and the health check's question to it.

Read from the database rather than counted in memory, so the figures hold for every worker on every
host and survive restarts; and read cheaply, so a scrape costs the same at any ledger size: the counts
by status come from ``delivery_counts`` (kept by triggers), the backlog from the partial index of
queued rows, the send rate from the index on ``sent_at``.

The web door turns these into Prometheus gauges at collection time (``newsletter.web.metrics``);
nothing here knows the exposition format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, literal_column, select
from sqlalchemy.orm import Session

from newsletter.db import Database
from newsletter.delivery.relays import relay_counts
from newsletter.errors import NewsletterError
from newsletter.models import (
    Delivery,
    DeliveryCount,
    DeliveryStatus,
    Issue,
    IssueStatus,
    SourceState,
)
from newsletter.services import stats

#: A value for each tuple of label values (``()`` for a gauge without labels).
Values = dict[tuple[str, ...], float]


@dataclass(frozen=True, slots=True)
class Gauge:
    """One gauge family: its label names, and a value for each tuple of label values."""

    name: str
    help: str
    labels: tuple[str, ...] = ()
    values: Values = field(default_factory=dict)


DATABASE_UP = ("newsletter_database_up", "Whether the database answered the scrape.")


def read_gauges(database: Database, *, now: datetime, detailed: bool) -> list[Gauge]:
    """What a scrape shows of the database; ``detailed`` (the admin's scrape) adds the subscribers.

    A database that does not answer gives ``newsletter_database_up 0`` and nothing else.
    """
    try:
        with database.transaction(readonly=True) as session:
            subscribers = subscriber_gauges(session) if detailed else []
            editions = edition_gauges(session)
            delivery = delivery_gauges(session, now=now)
            relays = relay_gauges(session)
    except NewsletterError:
        return [Gauge(*DATABASE_UP, values={(): 0.0})]
    return [Gauge(*DATABASE_UP, values={(): 1.0}), *editions, *subscribers, *delivery, *relays]


def relay_gauges(session: Session) -> list[Gauge]:
    """What each SMTP relay did with the messages handed to it, all workers together (a few rows)."""
    values: Values = {
        (relay, kind): float(count)
        for relay, kinds in relay_counts(session).items()
        for kind, count in kinds.items()
    }
    return [
        Gauge(
            "newsletter_relay_messages",
            "Messages per SMTP relay since counting began, by outcome "
            "(sent, deferred, failed, skipped: passed over while unreachable or after a 421).",
            ("relay", "outcome"),
            values,
        )
    ]


def edition_gauges(session: Session) -> list[Gauge]:
    editions: Values = {
        (status.value,): float(count)
        for status, count in stats.edition_counts(session).items()
        if count
    }
    return [Gauge("newsletter_editions", "Editions by status.", ("status",), editions)]


def subscriber_gauges(session: Session) -> list[Gauge]:
    """Subscribers by status and paused: for the admin's scrape only (a public count would tell
    whether a signup was of a new address)."""
    by_status: Values = {
        (status.value,): float(count)
        for status, count in stats.subscriber_counts(session).items()
        if count
    }
    return [
        Gauge("newsletter_subscribers", "Subscribers by status.", ("status",), by_status),
        Gauge(
            "newsletter_subscribers_paused",
            "Subscribers who paused.",
            values={(): float(stats.paused_count(session))},
        ),
    ]


def delivery_gauges(session: Session, *, now: datetime) -> list[Gauge]:
    by_status: Values = dict.fromkeys(((status.value,) for status in DeliveryStatus), 0.0)
    # The counts table the triggers keep (a few rows an edition), never the ledger itself.
    for status, count in session.execute(
        select(DeliveryCount.status, func.sum(DeliveryCount.count)).group_by(DeliveryCount.status)
    ):
        by_status[(status,)] = float(count or 0)
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
    failing: Values = {
        (key,): float(failures)
        for key, failures in session.execute(select(SourceState.key, SourceState.failures))
    }
    return [
        Gauge(
            "newsletter_deliveries", "Deliveries in the ledger, by status.", ("status",), by_status
        ),
        Gauge(
            "newsletter_queue_due",
            "Deliveries queued and due now (the backlog).",
            values={(): float(due or 0)},
        ),
        Gauge(
            "newsletter_send_rate_per_second",
            "Messages accepted per second over the last 5 minutes, all workers together.",
            values={(): (recent or 0) / 300.0},
        ),
        Gauge(
            "newsletter_last_edition_sent_timestamp_seconds",
            "When the last edition finished sending (Unix time; 0: never).",
            values={(): last_sent.timestamp() if last_sent else 0.0},
        ),
        Gauge(
            "newsletter_source_consecutive_failures",
            "Fetches in a row that failed, by source (0: the last one worked).",
            ("source",),
            failing,
        ),
    ]
