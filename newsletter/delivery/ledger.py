"""The deliveries ledger: one row per (edition, subscriber), the queue and the exactly-once guard.

Enqueueing twice adds nothing, and a row is marked sent only after the transport accepted its
message. This module enqueues and reschedules; claiming is in :mod:`~newsletter.delivery.claims`,
recording outcomes in :mod:`~newsletter.delivery.recording`, the counts in
:mod:`~newsletter.delivery.progress`, every status move checked by
:mod:`~newsletter.delivery.states`. Their public names are re-exported here (``ledger.claim_batch``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    and_,
    delete,
    func,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from kernel import insert_ignoring_conflicts
from newsletter.delivery.claims import Claimed as Claimed
from newsletter.delivery.claims import claim_batch as claim_batch
from newsletter.delivery.claims import reap_expired as reap_expired
from newsletter.delivery.claims import release as release
from newsletter.delivery.progress import counts as counts
from newsletter.delivery.progress import failure_reasons as failure_reasons
from newsletter.delivery.progress import next_due as next_due
from newsletter.delivery.progress import stalled as stalled
from newsletter.delivery.recording import Recorded as Recorded
from newsletter.delivery.recording import backoff as backoff
from newsletter.delivery.recording import record as record
from newsletter.delivery.states import move_rows, update_rows
from newsletter.models import Bounce, Delivery, DeliveryCount, DeliveryStatus, Issue, IssueStatus
from subscribers.model import Subscriber, SubscriberStatus


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
        result = cast(
            CursorResult[Any],
            session.execute(statement.execution_options(preserve_rowcount=True)),
        )
        added += max(result.rowcount, 0)
    return added


def refresh_statistics(session: Session, *, added: int) -> None:
    """After a large enqueue, let PostgreSQL's planner see the new rows (claims stay index walks)."""
    if added >= 10_000 and session.get_bind().dialect.name == "postgresql":
        session.execute(text("ANALYZE deliveries"))


def expire(session: Session, issue_id: int, *, due_before: datetime) -> int:
    """Fail queued rows that were due before ``due_before``: they missed their send window."""
    return move_rows(
        session,
        Delivery.issue_id == issue_id,
        Delivery.status == DeliveryStatus.QUEUED,
        Delivery.not_before < due_before,
        to=DeliveryStatus.FAILED,
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


#: The edition states whose ledger rows may be pruned: nothing is left to send.
PRUNABLE = (IssueStatus.SENT, IssueStatus.CANCELLED)
#: The delivery states a pruned row may be in (never one still queued or in flight).
FINISHED = (DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.SUPPRESSED)


def prunable_editions(session: Session, *, before: date) -> list[tuple[int, date, int]]:
    """The editions dated before ``before`` that are over and still hold ledger rows: each as
    (id, date, rows), oldest first. The counts come from ``delivery_counts`` (no ledger scan)."""
    rows = func.sum(DeliveryCount.count)
    query = (
        select(Issue.id, Issue.edition_date, rows)
        .join(DeliveryCount, DeliveryCount.issue_id == Issue.id)
        .where(
            Issue.edition_date < before,
            Issue.status.in_(PRUNABLE),
            DeliveryCount.status.in_(FINISHED),
        )
        .group_by(Issue.id, Issue.edition_date)
        .having(rows > 0)
        .order_by(Issue.edition_date)
    )
    return [(issue_id, day, int(count)) for issue_id, day, count in session.execute(query)]


def prune_edition(session: Session, issue_id: int, *, now: datetime) -> int:
    """Delete the finished ledger rows of one edition; return how many.

    Bounce and complaint reports stay (the subscriber's status and the audit trail do not depend
    on the ledger); they only lose the link to the deleted row. The delivery counts follow the
    deletion through the triggers of migration 0008, in the same transaction.
    """
    doomed = select(Delivery.id).where(Delivery.issue_id == issue_id, Delivery.status.in_(FINISHED))
    session.execute(
        update(Bounce)
        .where(Bounce.delivery_id.in_(doomed))
        .values(delivery_id=None)
        .execution_options(synchronize_session=False)
    )
    result = cast(
        CursorResult[Any],
        session.execute(
            delete(Delivery)
            .where(Delivery.issue_id == issue_id, Delivery.status.in_(FINISHED))
            .execution_options(synchronize_session=False, preserve_rowcount=True)
        ),
    )
    # Who received it is no longer known: a follow-up send must not take everyone for a newcomer.
    session.execute(update(Issue).where(Issue.id == issue_id).values(ledger_pruned_at=now))
    return max(result.rowcount, 0)
