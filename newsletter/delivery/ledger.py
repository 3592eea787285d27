"""The deliveries ledger: enqueue, claim under a lease, record outcomes.

One row per (edition, subscriber) is the exactly-once guard: enqueueing twice adds nothing, and a row
is marked sent only after the transport accepted its message. A worker that dies leaves rows in
``sending`` with a lease that expires; they become claimable again.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Result,
    and_,
    bindparam,
    func,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from newsletter.delivery.recipients import hold_back, suppress_refused
from newsletter.models import Delivery, DeliveryStatus
from subscribers.base import insert_ignoring_conflicts
from subscribers.model import MailFormat, Subscriber, SubscriberStatus

RETRY_BASE = timedelta(minutes=2)
RETRY_CAP = timedelta(hours=2)


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


@dataclass(frozen=True, slots=True)
class Recorded:
    """The outcome of one claimed delivery, to write back."""

    delivery_id: int
    subscriber_id: int
    outcome: str  # "sent", "retry", "failed", or "deferred" (paced: not an attempt)
    attempts: int
    message_id: str | None = None
    variant_key: str | None = None
    detail: str = ""
    suppress_recipient: bool = False
    queued_at: datetime | None = None
    code: int | None = None
    #: For "deferred": seconds until the route has room again.
    defer_seconds: float = 0.0


def _cursor(result: Result[Any]) -> CursorResult[Any]:
    """DML results carry a row count; the ORM's generic Result type does not say so."""
    return cast(CursorResult[Any], result)


def update_rows(session: Session, *conditions: ColumnElement[bool], **values: Any) -> int:
    """``UPDATE deliveries SET … WHERE …`` in one statement; return how many rows changed."""
    result = _cursor(
        session.execute(
            update(Delivery)
            .where(*conditions)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
    )
    return max(result.rowcount, 0)


def receives_editions() -> ColumnElement[bool]:
    """Who is sent an edition: confirmed and not paused (a paused subscriber waits for unpausing)."""
    return and_(Subscriber.status == SubscriberStatus.CONFIRMED, Subscriber.paused.is_(False))


def send_time_of(
    edition_date: date,
    zone: str | None,
    hour: int | None,
    *,
    default_zone: str,
    default_clock: time,
) -> datetime:
    """When a subscriber gets an edition: at the hour they chose, in their own time zone (or the
    newsletter's); without a chosen hour, at the newsletter's send time in the newsletter's zone."""
    if hour is None:
        return local_send_time(edition_date, default_zone, default_clock)
    return local_send_time(edition_date, zone or default_zone, time(hour, 0))


def local_send_time(edition_date: date, zone: str, clock: time) -> datetime:
    """The moment ``clock`` strikes on ``edition_date`` in ``zone`` (DST gaps move forward)."""
    local = datetime.combine(edition_date, clock, tzinfo=ZoneInfo(zone))
    # Normalise through UTC so a wall time that does not exist (spring forward) lands after the gap.
    return local.astimezone(ZoneInfo("UTC"))


def enqueue_issue(
    session: Session,
    issue_id: int,
    *,
    now: datetime,
    not_before: datetime | None = None,
    edition_date: date | None = None,
    default_zone: str = "UTC",
    default_clock: time = time(7, 0),
) -> int:
    """Add a queued delivery for every confirmed, unpaused subscriber not yet in the ledger.

    Returns how many were added.

    With ``not_before`` every row is due then (a manual "send now"); otherwise each subscriber's local
    send hour on ``edition_date``. One ``INSERT … SELECT`` per distinct (time zone, hour): the list of
    subscribers never passes through this process.
    """
    confirmed = receives_editions()
    if not_before is not None:
        groups: Iterable[tuple[str | None, int | None, datetime]] = [(None, None, not_before)]
    else:
        if edition_date is None:
            raise ValueError("enqueue_issue needs not_before or edition_date")
        combos = session.execute(
            select(Subscriber.timezone, Subscriber.send_hour).where(confirmed).distinct()
        )
        groups = [
            (
                zone,
                hour,
                send_time_of(
                    edition_date, zone, hour, default_zone=default_zone, default_clock=default_clock
                ),
            )
            for zone, hour in combos
        ]
    added = 0
    for zone, hour, due in groups:
        query = select(
            literal(issue_id, Delivery.issue_id.type),
            Subscriber.id,
            literal(DeliveryStatus.QUEUED, Delivery.status.type),
            literal(due, Delivery.not_before.type),
            literal(0, Delivery.attempts.type),
            literal(now, Delivery.created_at.type),
        ).where(confirmed)
        if not_before is None:
            query = query.where(
                Subscriber.timezone.is_not_distinct_from(zone),
                Subscriber.send_hour.is_not_distinct_from(hour),
            )
        statement = insert_ignoring_conflicts(session, Delivery).from_select(
            ["issue_id", "subscriber_id", "status", "not_before", "attempts", "created_at"], query
        )
        result = _cursor(session.execute(statement.execution_options(preserve_rowcount=True)))
        added += max(result.rowcount, 0)
    return added


def refresh_statistics(session: Session, *, added: int) -> None:
    """After a large enqueue, let PostgreSQL's planner see the new rows (claims stay index walks)."""
    if added >= 10_000 and session.get_bind().dialect.name == "postgresql":
        session.execute(text("ANALYZE deliveries"))


def reap_expired(session: Session, issue_id: int, *, now: datetime) -> int:
    """Put back rows whose worker's lease ran out (the worker died or hung)."""
    return update_rows(
        session,
        Delivery.issue_id == issue_id,
        Delivery.status == DeliveryStatus.SENDING,
        Delivery.lease_until < now,
        status=DeliveryStatus.QUEUED,
        lease_owner=None,
        lease_until=None,
    )


def expire(session: Session, issue_id: int, *, due_before: datetime) -> int:
    """Fail queued rows that were due before ``due_before``: they missed their send window."""
    return update_rows(
        session,
        Delivery.issue_id == issue_id,
        Delivery.status == DeliveryStatus.QUEUED,
        Delivery.not_before < due_before,
        status=DeliveryStatus.FAILED,
        last_error="missed its send time by more than the grace window; not sent late",
    )


def bring_forward(session: Session, issue_id: int, *, now: datetime) -> int:
    """Make every queued row of an edition due now (an operator resumes a send by hand)."""
    return update_rows(
        session,
        Delivery.issue_id == issue_id,
        Delivery.status == DeliveryStatus.QUEUED,
        Delivery.not_before > now,
        not_before=now,
    )


def claim_batch(
    session: Session, issue_id: int, *, owner: str, size: int, now: datetime, lease: timedelta
) -> list[Claimed]:
    """Take up to ``size`` due rows under a lease.

    PostgreSQL skips rows other workers hold (``FOR UPDATE SKIP LOCKED``); SQLite runs this inside
    ``BEGIN IMMEDIATE`` (see ``newsletter.db``), which serialises claimers.

    A row whose subscriber no longer receives editions (left, bounced or complained after it was
    queued, e.g. while a retry waited) is marked ``suppressed`` instead of being handed out.
    """
    while True:
        claimed = _claim_rows(session, issue_id, owner=owner, size=size, now=now, lease=lease)
        if not claimed:
            return []
        people = {
            row.id: row
            for row in session.execute(
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
        batch = [
            Claimed(
                delivery_id=row.id,
                subscriber_id=row.subscriber_id,
                email=people[row.subscriber_id].email,
                format=people[row.subscriber_id].format,
                attempts=row.attempts,
                queued_at=_aware(row.created_at),
                watchlist=_choice(people[row.subscriber_id].watchlist),
                sections=_choice(people[row.subscriber_id].sections),
                link_key=people[row.subscriber_id].link_key,
            )
            for row in claimed
            if row.id not in gone
        ]
        if batch:
            batch.sort(key=lambda item: item.delivery_id)
            return batch


def _claim_rows(
    session: Session, issue_id: int, *, owner: str, size: int, now: datetime, lease: timedelta
) -> list[Any]:
    due = (
        select(Delivery.id)
        .where(
            Delivery.issue_id == issue_id,
            Delivery.status == DeliveryStatus.QUEUED,
            Delivery.not_before <= now,
        )
        .order_by(Delivery.id)
        .limit(size)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    return list(
        session.execute(
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
        ).all()
    )


def backoff(attempts: int, *, rng: random.Random | None = None) -> timedelta:
    """Exponential backoff with full jitter: up to 2 min × 2^(attempts-1), capped at 2 h."""
    ceiling = min(RETRY_BASE * (1 << min(max(attempts - 1, 0), 16)), RETRY_CAP)
    draw = rng.random() if rng is not None else random.random()
    return ceiling * (0.5 + 0.5 * draw)


def _choice(value: object) -> tuple[str, ...] | None:
    """A stored preference list as a tuple; None (the default) for anything else."""
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    return None


def _aware(value: datetime) -> datetime:
    """RETURNING bypasses the column type on some drivers: make SQLite's naive UTC aware."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


_MARK_SENT = (
    update(Delivery)
    .where(Delivery.id == bindparam("b_id"))
    .values(
        status=DeliveryStatus.SENT,
        sent_at=bindparam("b_now", type_=Delivery.sent_at.type),
        message_id=bindparam("b_message_id"),
        variant_key=bindparam("b_variant_key"),
        last_error=None,
        lease_owner=None,
        lease_until=None,
    )
)


def _mark_sent(session: Session, results: Sequence[Recorded], *, now: datetime) -> None:
    """One statement for a flush of accepted messages (pipelined by the driver)."""
    session.connection().execute(
        _MARK_SENT,
        [
            {
                "b_id": result.delivery_id,
                "b_now": now,
                "b_message_id": result.message_id,
                "b_variant_key": result.variant_key,
            }
            for result in results
        ],
    )


def record(
    session: Session,
    results: Sequence[Recorded],
    *,
    owner: str,
    now: datetime,
    max_attempts: int,
    max_age: timedelta = timedelta(hours=24),
) -> None:
    """Write outcomes back. A sent row is sent whatever happened to its lease meanwhile.

    A temporary failure is queued again with backoff until ``max_attempts`` tries or ``max_age``
    since it was queued, then it fails with the last reply kept. The sent rows (nearly all of them)
    are written with one executemany; the rest one by one.
    """
    sent = [result for result in results if result.outcome == "sent"]
    if sent:
        _mark_sent(session, sent, now=now)
    for result in results:
        if result.outcome == "sent":
            continue
        values: dict[str, object]
        guard = Delivery.id == result.delivery_id
        if result.outcome == "deferred":
            guard = and_(guard, Delivery.lease_owner == owner)
            values = {
                "status": DeliveryStatus.QUEUED,
                "not_before": now + timedelta(seconds=result.defer_seconds),
                "attempts": Delivery.attempts - 1,
            }
        else:
            guard = and_(guard, Delivery.lease_owner == owner)
            too_old = result.queued_at is not None and now - result.queued_at >= max_age
            if result.outcome == "retry" and result.attempts < max_attempts and not too_old:
                values = {
                    "status": DeliveryStatus.QUEUED,
                    "not_before": now + backoff(result.attempts),
                    "last_error": result.detail[:2000],
                }
            elif result.outcome == "retry":
                reason = f"gave up after {result.attempts} attempts: {result.detail}"
                values = {"status": DeliveryStatus.FAILED, "last_error": reason[:2000]}
            else:
                values = {"status": DeliveryStatus.FAILED, "last_error": result.detail[:2000]}
        values.update(lease_owner=None, lease_until=None)
        session.execute(
            update(Delivery)
            .where(guard)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if result.suppress_recipient:
            suppress_refused(
                session,
                result.subscriber_id,
                reason=f"refused by the mail server: {result.detail}",
                now=now,
            )


def release(session: Session, delivery_ids: Sequence[int], *, owner: str) -> int:
    """Give back claimed rows that were not attempted (the worker is stopping)."""
    if not delivery_ids:
        return 0
    return update_rows(
        session,
        Delivery.id.in_(delivery_ids),
        Delivery.lease_owner == owner,
        Delivery.status == DeliveryStatus.SENDING,
        status=DeliveryStatus.QUEUED,
        lease_owner=None,
        lease_until=None,
        attempts=Delivery.attempts - 1,
    )


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
