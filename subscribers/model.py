"""The subscriber row and its state machine.

::

    pending ──confirm──▶ confirmed ──unsubscribe──▶ unsubscribed ──resubscribe──▶ pending
        │                    │
        └──────suppress──────┴──▶ bounced | complained

Suppression is a status, never a deletion: an import cannot bring back an address that left. When a
row is deleted or erased, a :class:`Suppression` keeps a hash of its address so that this still holds.

Ids are never reused (AUTOINCREMENT on SQLite, sequences on PostgreSQL), and each subscriber holds a
random ``link_key`` that every personal link carries: erasing or deleting the row kills its links.
Every consent given or withdrawn is appended to :class:`ConsentEvent`, never overwritten.
"""

from __future__ import annotations

import enum
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Integer,
    String,
    Text,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from kernel import Base, BigId, UTCDateTime, status_enum, utcnow
from subscribers.errors import IllegalTransition


class SubscriberStatus(enum.StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


#: Statuses that keep an address from being re-added by an import or a signup.
SUPPRESSED = frozenset(
    {SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED}
)


def new_link_key() -> str:
    """A random key for a subscriber's personal links (96 bits, URL-safe)."""
    return secrets.token_urlsafe(12)


class MailFormat(enum.StrEnum):
    HTML = "html"
    TEXT = "text"


class Subscriber(Base):
    __tablename__ = "subscribers"
    __table_args__ = (
        CheckConstraint(
            "send_hour IS NULL OR (send_hour >= 0 AND send_hour <= 23)", name="send_hour"
        ),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    #: The address folded for uniqueness: lower-cased local part, ASCII (IDNA) domain.
    email_key: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[SubscriberStatus] = mapped_column(
        status_enum(SubscriberStatus, "subscriber_status"),
        default=SubscriberStatus.PENDING,
        index=True,
    )
    status_reason: Mapped[str | None] = mapped_column(Text)
    timezone: Mapped[str | None] = mapped_column(String(64))
    send_hour: Mapped[int | None] = mapped_column(Integer)
    format: Mapped[MailFormat] = mapped_column(
        status_enum(MailFormat, "mail_format"), default=MailFormat.HTML
    )
    watchlist: Mapped[list[str] | None] = mapped_column(JSON)
    sections: Mapped[list[str] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    unsubscribed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status_changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    consent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    consent_source: Mapped[str | None] = mapped_column(String(200))
    consent_ip: Mapped[str | None] = mapped_column(String(45))
    consent_user_agent: Mapped[str | None] = mapped_column(String(500))
    consent_wording: Mapped[str | None] = mapped_column(String(40))
    #: Where the confirmation click came from (double opt-in), beside the consent record above.
    confirmed_ip: Mapped[str | None] = mapped_column(String(45))
    confirmed_user_agent: Mapped[str | None] = mapped_column(String(500))
    #: Set while pending: confirmation links carry it, and confirming clears it (single use).
    confirm_nonce: Mapped[str | None] = mapped_column(String(32))
    #: Skip me until I unpause (a preference; the status stays confirmed).
    paused: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    #: Carried by every personal link; dies with the row, so an erased person's links act on nobody.
    link_key: Mapped[str] = mapped_column(String(32), default=new_link_key)
    #: Subscribed before links carried a key: links with the id alone still work for this row.
    legacy_links: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    def __repr__(self) -> str:
        return f"<Subscriber {self.id} {self.status.value}>"

    @property
    def is_suppressed(self) -> bool:
        return self.status in SUPPRESSED

    def as_dict(self) -> dict[str, Any]:
        """Everything held about this subscriber, as JSON-ready data (not the nonce or link key)."""
        data: dict[str, Any] = {}
        for column in self.__table__.columns:
            if column.key in ("confirm_nonce", "link_key"):
                continue
            value = getattr(self, column.key)
            if isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, enum.Enum):
                value = value.value
            data[column.key] = value
        return data


class Suppression(Base):
    """An address that must never be mailed again by an import or an operator, kept as a hash only.

    Written when a suppressed subscriber is deleted and on every erasure, so that suppression survives
    the row. Only a new double opt-in by the address's owner lifts it.
    """

    __tablename__ = "suppressions"

    #: SHA-256 of the address key (see :func:`subscribers.privacy.address_hash`).
    email_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    reason: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ConsentKind(enum.StrEnum):
    SIGNUP = "signup"  # asked on the form (double opt-in pending)
    CONFIRM = "confirm"  # confirmed from the mailed link
    REJOIN = "rejoin"  # came back through the signed link of one's own mail
    ADDED = "added"  # added by an operator (CLI, API), consent obtained elsewhere
    IMPORTED = "imported"  # imported from a file
    UNSUBSCRIBE = "unsubscribe"  # consent withdrawn


#: Kinds that withdraw consent: an address with one of these was suppressed once.
WITHDRAWN = frozenset({ConsentKind.UNSUBSCRIBE})


class ConsentEvent(Base):
    """One consent given or withdrawn: appended, never changed. Erasure removes them with the row."""

    __tablename__ = "consent_events"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(20))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    source: Mapped[str | None] = mapped_column(String(200))
    ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(500))
    wording: Mapped[str | None] = mapped_column(String(40))

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "at": self.at.isoformat(),
            "source": self.source,
            "ip": self.ip,
            "user_agent": self.user_agent,
            "wording": self.wording,
        }


class RateLimitBucket(Base):
    """Hits of one rate-limit window (see :mod:`subscribers.ratelimit`), shared by every process."""

    __tablename__ = "rate_limits"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    hits: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class SubscriberCount(Base):
    """How many subscribers there are in each (status, paused), kept by database triggers
    (migration 0013).

    Every insert, update and delete of ``subscribers`` adds its difference here in the same
    transaction, so that the admin's counts (``/api/stats``, ``/metrics``) sum a few rows instead of
    counting the list. ``shard`` is the writing PostgreSQL backend (0 on SQLite): concurrent
    signups never update the same row, so the counts add no lock waits.
    """

    __tablename__ = "subscriber_counts"

    status: Mapped[str] = mapped_column(String(20), primary_key=True)
    paused: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    shard: Mapped[int] = mapped_column(Integer, primary_key=True)
    count: Mapped[int] = mapped_column(BigId)


# The legal moves. Each function changes the row in place and raises IllegalTransition otherwise.


def _move(
    subscriber: Subscriber,
    to: SubscriberStatus,
    *,
    allowed_from: frozenset[SubscriberStatus],
    now: datetime,
    reason: str | None = None,
) -> None:
    if subscriber.status not in allowed_from:
        raise IllegalTransition(
            f"subscriber {subscriber.email} is {subscriber.status.value}; "
            f"it cannot become {to.value}"
        )
    subscriber.status = to
    subscriber.status_changed_at = now
    subscriber.status_reason = reason


def confirm(subscriber: Subscriber, *, now: datetime | None = None) -> bool:
    """pending → confirmed. Confirming a confirmed subscriber is a no-op (returns False)."""
    now = now or utcnow()
    if subscriber.status is SubscriberStatus.CONFIRMED:
        return False
    _move(
        subscriber,
        SubscriberStatus.CONFIRMED,
        allowed_from=frozenset({SubscriberStatus.PENDING}),
        now=now,
    )
    subscriber.confirmed_at = now
    return True


def unsubscribe(
    subscriber: Subscriber, *, now: datetime | None = None, reason: str | None = None
) -> bool:
    """pending or confirmed → unsubscribed; idempotent for a suppressed subscriber (returns False)."""
    now = now or utcnow()
    if subscriber.is_suppressed:
        return False
    _move(
        subscriber,
        SubscriberStatus.UNSUBSCRIBED,
        allowed_from=frozenset({SubscriberStatus.PENDING, SubscriberStatus.CONFIRMED}),
        now=now,
        reason=reason,
    )
    subscriber.unsubscribed_at = now
    return True


def suppress(
    subscriber: Subscriber, status: SubscriberStatus, *, reason: str, now: datetime | None = None
) -> bool:
    """Any status → bounced or complained (a hard bounce, a spam complaint)."""
    if status not in (SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED):
        raise IllegalTransition(f"{status.value} is not a suppression status")
    if subscriber.status is status:
        return False
    _move(
        subscriber,
        status,
        allowed_from=frozenset(SubscriberStatus) - {SubscriberStatus.COMPLAINED},
        now=now or utcnow(),
        reason=reason,
    )
    return True


def resubscribe(subscriber: Subscriber, *, now: datetime | None = None) -> None:
    """unsubscribed → pending: the subscriber asked to come back and must confirm again."""
    _move(
        subscriber,
        SubscriberStatus.PENDING,
        allowed_from=frozenset({SubscriberStatus.UNSUBSCRIBED}),
        now=now or utcnow(),
    )
    subscriber.confirmed_at = None
    subscriber.unsubscribed_at = None
