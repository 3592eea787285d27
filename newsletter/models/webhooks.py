"""Outgoing webhooks: the endpoints operators register and the deliveries of their events."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from kernel import Base, BigId, UTCDateTime, status_enum, utcnow


class WebhookEndpoint(Base):
    """An operator's receiver of outgoing webhooks: where to post, which events, the signing secret.

    Disabled either by an operator (no event is queued for it meanwhile) or after a run of failed
    attempts (``auto_disabled``: its events keep being queued, and are delivered once it is enabled
    again, so that an outage loses nothing).
    """

    __tablename__ = "webhook_endpoints"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str] = mapped_column(String(200), default="")
    #: The event types it receives.
    events: Mapped[list[str]] = mapped_column(JSON)
    #: The Standard Webhooks signing secret, ``whsec_`` and base64 of random bytes.
    secret: Mapped[str] = mapped_column(String(100))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    #: Disabled after ``webhook_failure_limit`` failed attempts in a row, not by an operator.
    auto_disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    #: Failed attempts since the last success.
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    #: After a failure no message goes to this endpoint before then (backoff per receiver).
    retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"


class WebhookDelivery(Base):
    """One event for one endpoint: the queue of outgoing webhooks and their audit trail.

    Inserted in the transaction of the event itself; ``payload`` holds the exact JSON body that is
    signed and posted; ``message_id`` (the ``webhook-id`` header) is the same for every endpoint of
    one event and on every retry, so that a receiver can drop a message it has seen.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "message_id"),
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            "id",
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True
    )
    message_id: Mapped[str] = mapped_column(String(40))
    event_type: Mapped[str] = mapped_column(String(50))
    payload: Mapped[str] = mapped_column(Text)
    #: The subscriber the event is about, if any (no foreign key: the row may be deleted), so that
    #: erasing a subscriber can drop what the queue holds about them.
    subscriber_id: Mapped[int | None] = mapped_column(BigId, index=True)
    status: Mapped[WebhookStatus] = mapped_column(
        status_enum(WebhookStatus, "webhook_status"), default=WebhookStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The HTTP status of the last attempt (None: no answer).
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
