"""The outbox of subscription mails (confirm, already subscribed, welcome, goodbye)."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from kernel import Base, BigId, UTCDateTime, status_enum


class OutboxStatus(enum.StrEnum):
    """Where a subscription mail is: ``queued`` (due at ``not_before``), ``sending`` (claimed
    under a lease), ``sent``, or ``failed`` (given up, with the reason in ``last_error``)."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


class OutboxMail(Base):
    """A subscription mail (confirm, already subscribed, welcome, goodbye), written in the same
    transaction as the subscriber change that made it due, and delivered from here.

    ``message`` holds the finished bytes until the mail is sent or given up; it is cleared then, so
    that the table keeps no personal link longer than the mail needs it.
    """

    __tablename__ = "outbox_mails"
    __table_args__ = (
        Index("ix_outbox_mails_status_not_before", "status", "not_before"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    subscriber_id: Mapped[int | None] = mapped_column(BigId, index=True)
    recipient: Mapped[str] = mapped_column(String(320))
    envelope_sender: Mapped[str] = mapped_column(String(320))
    message_id: Mapped[str] = mapped_column(String(300))
    message: Mapped[bytes | None] = mapped_column(LargeBinary)
    status: Mapped[OutboxStatus] = mapped_column(
        status_enum(OutboxStatus, "outbox_status"), default=OutboxStatus.QUEUED
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[datetime] = mapped_column(UTCDateTime)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
