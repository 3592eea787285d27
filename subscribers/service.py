"""One subscriber at a time: adding, looking up, counting and listing.

Functions take a SQLAlchemy ``Session``; the caller owns the transaction, so the same code serves
the CLI, the web and the scheduler. Files of many subscribers (CSV import and export) are in
:mod:`subscribers.transfer`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kernel import utcnow
from subscribers import consent
from subscribers.addresses import normalise
from subscribers.errors import SubscriberError, SuppressedAddress, UnknownSubscriber
from subscribers.model import (
    ConsentKind,
    Subscriber,
    SubscriberCount,
    SubscriberStatus,
    Suppression,
    new_link_key,
)
from subscribers.privacy import address_hash


def check_timezone(value: str | None) -> str | None:
    """Return a valid IANA zone name, None for an empty value; raise SubscriberError otherwise."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise SubscriberError(f"unknown time zone {value!r}") from None
    return value


def clean_name(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if any(char in value for char in "\r\n\x00"):
        raise SubscriberError("the name contains a line break")
    if len(value) > 200:
        raise SubscriberError("the name is longer than 200 characters")
    return value or None


def add_subscriber(
    session: Session,
    email: str,
    *,
    name: str | None = None,
    timezone: str | None = None,
    confirmed: bool = False,
    source: str = "cli",
    now: datetime | None = None,
) -> tuple[Subscriber, bool]:
    """Add one address; return the subscriber and whether it was created.

    An address already on the list is returned unchanged, whatever its status: a suppressed address is
    never re-activated here. An address deleted while suppressed, or erased, is refused
    (:class:`SuppressedAddress`): only its owner can bring it back, by subscribing and confirming.
    """
    now = now or utcnow()
    address = normalise(email)
    existing = session.scalar(select(Subscriber).where(Subscriber.email_key == address.key))
    if existing is not None:
        return existing, False
    suppression = session.get(Suppression, address_hash(address.key))
    if suppression is not None:
        raise SuppressedAddress(
            f"{address.email} left the list ({suppression.reason} on "
            f"{suppression.created_at:%Y-%m-%d}) and may not be added again",
            hint="only its owner can come back, by subscribing on the web page and confirming",
        )
    subscriber = Subscriber(
        email=address.email,
        email_key=address.key,
        name=clean_name(name),
        timezone=check_timezone(timezone),
        status=SubscriberStatus.CONFIRMED if confirmed else SubscriberStatus.PENDING,
        created_at=now,
        status_changed_at=now,
        confirmed_at=now if confirmed else None,
        consent_at=now,
        consent_source=source,
        link_key=new_link_key(),
    )
    session.add(subscriber)
    session.flush()
    consent.append(session, subscriber.id, ConsentKind.ADDED, at=now, source=source)
    return subscriber, True


def get_by_email(session: Session, email: str) -> Subscriber:
    key = normalise(email).key
    subscriber = session.scalar(select(Subscriber).where(Subscriber.email_key == key))
    if subscriber is None:
        raise UnknownSubscriber(f"no subscriber has the address {email}")
    return subscriber


def count_subscribers(session: Session) -> dict[SubscriberStatus, int]:
    """Subscribers by status, from the counts the triggers keep (a few rows, whatever the list)."""
    counts = dict.fromkeys(SubscriberStatus, 0)
    for status, count in session.execute(
        select(SubscriberCount.status, func.sum(SubscriberCount.count)).group_by(
            SubscriberCount.status
        )
    ):
        counts[SubscriberStatus(status)] += int(count or 0)
    return counts


def count_paused(session: Session) -> int:
    """Subscribers who paused their mail, from the counts the triggers keep."""
    total = session.scalar(
        select(func.sum(SubscriberCount.count)).where(SubscriberCount.paused.is_(True))
    )
    return int(total or 0)


def iter_subscribers(
    session: Session, *, status: SubscriberStatus | None = None, batch: int = 1000
) -> Iterator[Subscriber]:
    """Stream subscribers in id order without loading the whole list."""
    query = select(Subscriber).order_by(Subscriber.id)
    if status is not None:
        query = query.where(Subscriber.status == status)
    yield from session.scalars(query.execution_options(yield_per=batch))
