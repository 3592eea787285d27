"""Suppression that outlives the row, GDPR export and erasure.

An erased or deleted address leaves only ``sha256("newsletter.suppression:" + key)`` behind (the key is
the folded address of :func:`subscribers.addresses.normalise`), so that an import or an operator can
never add it again, while nothing readable about the person is kept. Only the owner of the address
can lift it, by subscribing again and confirming (double opt-in).

Rows that point at a subscriber from outside this package (the deliveries ledger) are removed through
the ``release`` callback the caller passes, so that this package stays free of ``newsletter``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from kernel import insert_ignoring_conflicts, utcnow
from subscribers import consent
from subscribers.addresses import normalise
from subscribers.model import ConsentEvent, Subscriber, SubscriberStatus, Suppression

#: Removes what refers to a subscriber id elsewhere before the row goes (deliveries, ...).
Release = Callable[[Session, int], object]

ERASED = "erased"
DELETED = "deleted"
PURGED = "purged"


def address_hash(key: str) -> str:
    """The hash kept for a folded address key (never the address itself)."""
    return hashlib.sha256(f"newsletter.suppression:{key}".encode()).hexdigest()


def suppress_key(session: Session, key: str, *, reason: str, now: datetime | None = None) -> None:
    """Remember that ``key`` must not be re-added (idempotent)."""
    statement = insert_ignoring_conflicts(session, Suppression, index_elements=["email_hash"])
    session.execute(
        statement.values(email_hash=address_hash(key), reason=reason, created_at=now or utcnow())
    )


def suppressed_keys(session: Session, keys: Iterable[str]) -> set[str]:
    """Which of these address keys are suppressed by hash (deleted or erased earlier)."""
    by_hash = {address_hash(key): key for key in keys}
    if not by_hash:
        return set()
    found = session.scalars(
        select(Suppression.email_hash).where(Suppression.email_hash.in_(list(by_hash)))
    )
    return {by_hash[value] for value in found}


def suppression_of(session: Session, key: str) -> Suppression | None:
    return session.get(Suppression, address_hash(key))


def lift_suppression(session: Session, key: str) -> bool:
    """Forget the hash of ``key``: its owner confirmed a new subscription. Returns whether one existed."""
    result = session.execute(delete(Suppression).where(Suppression.email_hash == address_hash(key)))
    return bool(getattr(result, "rowcount", 0))


@dataclass(frozen=True, slots=True)
class Removal:
    """The outcome of deleting or erasing: whether a row existed, and whether the address is suppressed."""

    found: bool
    suppressed: bool
    subscriber_id: int | None = None


def ever_suppressed(session: Session, subscriber: Subscriber) -> bool:
    """Whether this address left, bounced or complained at any time, even if its owner came back."""
    return (
        subscriber.is_suppressed
        or subscriber.unsubscribed_at is not None
        or consent.ever_withdrawn(session, subscriber.id)
    )


def _remove(session: Session, subscriber: Subscriber, release: Release | None) -> int:
    subscriber_id = subscriber.id
    if release is not None:
        release(session, subscriber_id)
    session.execute(delete(ConsentEvent).where(ConsentEvent.subscriber_id == subscriber_id))
    session.delete(subscriber)
    session.flush()
    return subscriber_id


def delete_subscriber(
    session: Session,
    subscriber: Subscriber,
    *,
    release: Release | None = None,
    now: datetime | None = None,
) -> Removal:
    """Delete a row. One that was ever suppressed (left, bounced, complained) leaves its hash."""
    suppressed = ever_suppressed(session, subscriber)
    if suppressed:
        suppress_key(session, subscriber.email_key, reason=DELETED, now=now)
    subscriber_id = _remove(session, subscriber, release)
    return Removal(found=True, suppressed=suppressed, subscriber_id=subscriber_id)


def stale_pending(session: Session, *, before: datetime) -> list[Subscriber]:
    """Signups never confirmed whose last request is older than ``before``."""
    return list(
        session.scalars(
            select(Subscriber)
            .where(
                Subscriber.status == SubscriberStatus.PENDING,
                func.coalesce(Subscriber.consent_at, Subscriber.created_at) < before,
            )
            .order_by(Subscriber.id)
        )
    )


def purge_pending(
    session: Session,
    *,
    before: datetime,
    release: Release | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
) -> int:
    """Delete signups never confirmed and requested before ``before``; keep no address.

    An address that was suppressed once (an old row) keeps only its hash, as a deletion would.
    Returns how many were (or, with ``dry_run``, would be) purged.
    """
    stale = stale_pending(session, before=before)
    if dry_run:
        return len(stale)
    for subscriber in stale:
        if ever_suppressed(session, subscriber):
            suppress_key(session, subscriber.email_key, reason=PURGED, now=now)
        _remove(session, subscriber, release)
    return len(stale)


def erase(
    session: Session, email: str, *, release: Release | None = None, now: datetime | None = None
) -> Removal:
    """Erase everything held about ``email`` (right to erasure); keep its hash so it stays suppressed.

    Works whether or not the address is on the list: an erasure request also means "never add me".
    """
    key = normalise(email).key
    suppress_key(session, key, reason=ERASED, now=now)
    subscriber = session.scalar(select(Subscriber).where(Subscriber.email_key == key))
    if subscriber is None:
        return Removal(found=False, suppressed=True)
    subscriber_id = _remove(session, subscriber, release)
    return Removal(found=True, suppressed=True, subscriber_id=subscriber_id)


def export_data(session: Session, email: str, *, now: datetime | None = None) -> dict[str, Any]:
    """Everything held about ``email`` in this package, as JSON-ready data (right of access).

    The caller adds what other parts hold (the deliveries of each edition).
    """
    key = normalise(email).key
    subscriber = session.scalar(select(Subscriber).where(Subscriber.email_key == key))
    suppression = suppression_of(session, key)
    return {
        "email": email.strip(),
        "generated_at": (now or utcnow()).isoformat(),
        "on_the_list": subscriber is not None,
        "subscriber": subscriber.as_dict() if subscriber is not None else None,
        "consent_history": [event.as_dict() for event in consent.history(session, subscriber.id)]
        if subscriber is not None
        else [],
        "suppression": {
            "reason": suppression.reason,
            "since": suppression.created_at.isoformat(),
            "note": "only a hash of the address is kept, to keep it off the list",
        }
        if suppression is not None
        else None,
    }
