"""What the ledger says about an edition's send: counts, the next due row, why rows failed."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.models import Delivery, DeliveryStatus


def counts(session: Session, issue_id: int) -> dict[DeliveryStatus, int]:
    totals = dict.fromkeys(DeliveryStatus, 0)
    for status, count in session.execute(
        select(Delivery.status, func.count())
        .where(Delivery.issue_id == issue_id)
        .group_by(Delivery.status)
    ):
        totals[status] = count
    return totals


def next_due(session: Session, issue_id: int) -> datetime | None:
    """When the earliest queued row becomes due, or None when nothing is queued."""
    return session.scalar(
        select(func.min(Delivery.not_before)).where(
            Delivery.issue_id == issue_id, Delivery.status == DeliveryStatus.QUEUED
        )
    )


def failure_reasons(session: Session, issue_id: int, *, limit: int = 5) -> list[tuple[str, int]]:
    """The commonest reasons deliveries of an edition failed, most frequent first."""
    rows = session.execute(
        select(Delivery.last_error, func.count())
        .where(Delivery.issue_id == issue_id, Delivery.status == DeliveryStatus.FAILED)
        .group_by(Delivery.last_error)
        .order_by(func.count().desc(), Delivery.last_error)
        .limit(limit)
    )
    return [(reason or "no reason recorded", count) for reason, count in rows]


def stalled(session: Session, issue_id: int, *, now: datetime) -> int:
    """Rows left in flight by a sender whose lease ran out (it stopped or died mid-send)."""
    return (
        session.scalar(
            select(func.count())
            .select_from(Delivery)
            .where(
                Delivery.issue_id == issue_id,
                Delivery.status == DeliveryStatus.SENDING,
                Delivery.lease_until < now,
            )
        )
        or 0
    )
