"""Claiming deliveries: a worker takes due rows under a lease, and gives back what it did not try.

PostgreSQL skips rows other workers hold (``FOR UPDATE SKIP LOCKED``); SQLite runs the claim inside
``BEGIN IMMEDIATE`` (see ``newsletter.db``), which serialises claimers. A worker that dies leaves
rows in ``sending`` with a lease that expires; :func:`reap_expired` puts them back in the queue.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from newsletter.delivery.recipients import hold_back
from newsletter.delivery.states import move_rows, only_source
from newsletter.models import Delivery, DeliveryStatus
from subscribers.model import MailFormat, Subscriber


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery this worker holds: who gets it and in which form."""

    delivery_id: int
    subscriber_id: int
    email: str
    format: MailFormat
    attempts: int
    queued_at: datetime
    watchlist: tuple[str, ...] | None = None
    sections: tuple[str, ...] | None = None
    #: The subscriber's link key, which every personal link of the message carries.
    link_key: str | None = None


def reap_expired(session: Session, issue_id: int, *, now: datetime) -> int:
    """Put back rows whose worker's lease ran out (the worker died or hung)."""
    return move_rows(
        session,
        Delivery.issue_id == issue_id,
        Delivery.status == DeliveryStatus.SENDING,
        Delivery.lease_until < now,
        to=DeliveryStatus.QUEUED,
        lease_owner=None,
        lease_until=None,
    )


def claim_batch(
    session: Session, issue_id: int, *, owner: str, size: int, now: datetime, lease: timedelta
) -> list[Claimed]:
    """Take up to ``size`` due rows under a lease.

    A row whose subscriber no longer receives editions (left, bounced or complained after it was
    queued, e.g. while a retry waited) is marked ``suppressed`` instead of being handed out.
    """
    while True:
        claimed = _claim_rows(session, issue_id, owner=owner, size=size, now=now, lease=lease)
        if not claimed:
            return []
        # Core statements on the session's connection: the ORM adds nothing to plain columns but
        # its own per-statement work, which every batch would pay.
        people = {
            row.id: row
            for row in session.connection().execute(
                select(
                    Subscriber.id,
                    Subscriber.email,
                    Subscriber.status,
                    Subscriber.format,
                    Subscriber.watchlist,
                    Subscriber.sections,
                    Subscriber.link_key,
                ).where(Subscriber.id.in_([row.subscriber_id for row in claimed]))
            )
        }
        gone = hold_back(session, claimed, people)
        batch = []
        for row in claimed:
            if row.id in gone:
                continue
            person = people[row.subscriber_id]
            batch.append(
                Claimed(
                    delivery_id=row.id,
                    subscriber_id=row.subscriber_id,
                    email=person.email,
                    format=person.format,
                    attempts=row.attempts,
                    queued_at=_aware(row.created_at),
                    watchlist=_choice(person.watchlist),
                    sections=_choice(person.sections),
                    link_key=person.link_key,
                )
            )
        if batch:
            batch.sort(key=lambda item: item.delivery_id)
            return batch


def _claim_rows(
    session: Session, issue_id: int, *, owner: str, size: int, now: datetime, lease: timedelta
) -> list[Any]:
    # Only the inner SELECT filters (the status the table allows a claim from): a condition
    # added to the outer UPDATE lets PostgreSQL rescan the SKIP LOCKED subquery and take more.
    due = (
        select(Delivery.id)
        .where(
            Delivery.issue_id == issue_id,
            Delivery.status == only_source(DeliveryStatus.SENDING),
            Delivery.not_before <= now,
        )
        .order_by(Delivery.id)
        .limit(size)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    return list(
        session.connection()
        .execute(
            update(Delivery)
            .where(Delivery.id.in_(due))
            .values(
                status=DeliveryStatus.SENDING,
                lease_owner=owner,
                lease_until=now + lease,
                attempts=Delivery.attempts + 1,
            )
            .returning(Delivery.id, Delivery.subscriber_id, Delivery.attempts, Delivery.created_at)
            .execution_options(synchronize_session=False)
        )
        .all()
    )


def _choice(value: object) -> tuple[str, ...] | None:
    """A stored preference list as a tuple; None (the default) for anything else."""
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    return None


def _aware(value: datetime) -> datetime:
    """RETURNING bypasses the column type on some drivers: make SQLite's naive UTC aware."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def release(session: Session, delivery_ids: Sequence[int], *, owner: str) -> int:
    """Give back claimed rows that were not attempted (the worker is stopping)."""
    if not delivery_ids:
        return 0
    return move_rows(
        session,
        Delivery.id.in_(delivery_ids),
        Delivery.lease_owner == owner,
        Delivery.status == DeliveryStatus.SENDING,
        to=DeliveryStatus.QUEUED,
        lease_owner=None,
        lease_until=None,
        attempts=Delivery.attempts - 1,
    )
