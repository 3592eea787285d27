"""The deliveries ledger and what is counted of it: per-route rates, relay counts, bounces."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from kernel import Base, BigId, UTCDateTime, status_enum, utcnow
from subscribers.model import Subscriber


class DeliveryStatus(enum.StrEnum):
    """Where a delivery is; its moves are in :mod:`newsletter.delivery.states`."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    SUPPRESSED = "suppressed"


class Delivery(Base):
    """The ledger: one row per (edition, subscriber). Queue, audit trail and exactly-once guard."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("issue_id", "subscriber_id"),
        Index("ix_deliveries_issue_status", "issue_id", "status"),
        Index(
            "ix_deliveries_queued",
            "issue_id",
            "not_before",
            "id",
            sqlite_where=text("status = 'queued'"),
            postgresql_where=text("status = 'queued'"),
        ),
        # Claims take the lowest ids first: this keeps a claim a short index walk however many
        # rows of the edition were already sent.
        Index(
            "ix_deliveries_queued_id",
            "issue_id",
            "id",
            sqlite_where=text("status = 'queued'"),
            postgresql_where=text("status = 'queued'"),
        ),
        # The send rate of the last minutes (metrics) reads a short range, not the whole ledger.
        Index("ix_deliveries_sent_at", "sent_at"),
        # Delivery ids appear in bounce reports: never reuse one (SQLite would, without this).
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    issue_id: Mapped[int] = mapped_column(ForeignKey("issues.id"))
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id"), index=True)
    status: Mapped[DeliveryStatus] = mapped_column(
        status_enum(DeliveryStatus, "delivery_status"), default=DeliveryStatus.QUEUED
    )
    not_before: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    variant_key: Mapped[str | None] = mapped_column(String(200))
    message_id: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    subscriber: Mapped[Subscriber] = relationship()


class RouteRate(Base):
    """A sending route's token bucket (a relay, or a recipient domain), shared by every worker.

    ``tokens`` refill at ``per_minute``; while ``slowed_until`` is in the future (after a 421 or
    451 from that route) they refill at half that rate.
    """

    __tablename__ = "route_rates"

    route: Mapped[str] = mapped_column(String(300), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    slowed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    slow_reason: Mapped[str | None] = mapped_column(Text)


class RelayCount(Base):
    """What each SMTP relay did with the messages handed to it, all editions and workers together.

    Sending processes add their counts every few seconds and when they stop (one upsert a flush,
    never a query a message), so a crash forgets at most those seconds' counts; the ledger, not
    this table, says what was delivered.
    """

    __tablename__ = "relay_counts"

    relay: Mapped[str] = mapped_column(String(300), primary_key=True)
    sent: Mapped[int] = mapped_column(BigId, server_default=text("0"))
    deferred: Mapped[int] = mapped_column(BigId, server_default=text("0"))
    failed: Mapped[int] = mapped_column(BigId, server_default=text("0"))
    skipped: Mapped[int] = mapped_column(BigId, server_default=text("0"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class BounceKind(enum.StrEnum):
    HARD = "hard"
    SOFT = "soft"
    COMPLAINT = "complaint"


class Bounce(Base):
    """A bounce or complaint report about one recipient: the audit trail behind suppression."""

    __tablename__ = "bounces"
    __table_args__ = (UniqueConstraint("report_id", "recipient"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    #: Message-ID of the report (a DSN or a feedback report), so a report counts once.
    report_id: Mapped[str] = mapped_column(String(300))
    recipient: Mapped[str] = mapped_column(String(320))
    kind: Mapped[BounceKind] = mapped_column(status_enum(BounceKind, "bounce_kind"))
    status: Mapped[str | None] = mapped_column(String(20))
    diagnostic: Mapped[str | None] = mapped_column(Text)
    subscriber_id: Mapped[int | None] = mapped_column(ForeignKey("subscribers.id"), index=True)
    delivery_id: Mapped[int | None] = mapped_column(ForeignKey("deliveries.id"))
    source: Mapped[str] = mapped_column(String(100))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)


class DeliveryCount(Base):
    """How many deliveries each edition has in each status, kept by database triggers (0008).

    Every insert, update and delete of ``deliveries`` adds its difference here in the same
    transaction, whichever code path writes, so a metrics scrape sums a few rows instead of counting
    the ledger. ``shard`` is the writing PostgreSQL backend (0 on SQLite): concurrent transactions
    never update the same row, so the counts add no lock waits and no deadlocks between workers.
    """

    __tablename__ = "delivery_counts"

    issue_id: Mapped[int] = mapped_column(BigId, primary_key=True)
    status: Mapped[str] = mapped_column(String(20), primary_key=True)
    shard: Mapped[int] = mapped_column(Integer, primary_key=True)
    count: Mapped[int] = mapped_column(BigId)
