"""The ledger's view of its recipients: who may still get a claimed row, and bouncing a refused one.

A subscriber can leave, complain, be deleted or erased at any moment, also while a worker holds
their row. These two rules keep the ledger's writes valid whatever happened meanwhile.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from newsletter.delivery.states import move_rows
from newsletter.models import Delivery, DeliveryStatus
from newsletter.webhooks import events
from subscribers.errors import IllegalTransition
from subscribers.model import Subscriber, SubscriberStatus, suppress


def hold_back(session: Session, claimed: Sequence[Any], people: Mapping[int, Any]) -> set[int]:
    """Mark ``suppressed`` the claimed rows whose subscriber left or vanished since queueing.

    ``claimed`` rows carry ``id`` and ``subscriber_id``; ``people`` maps a subscriber id to a row
    with its ``status``. Returns the ids of the rows held back (not to be sent).
    """
    held: set[int] = set()
    for row in claimed:
        person = people.get(row.subscriber_id)
        if person is not None and person.status is SubscriberStatus.CONFIRMED:
            continue
        state = person.status.value if person is not None else "gone"
        move_rows(
            session,
            Delivery.id == row.id,
            to=DeliveryStatus.SUPPRESSED,
            lease_owner=None,
            lease_until=None,
            attempts=Delivery.attempts - 1,
            last_error=f"not sent: the subscriber is {state} now",
        )
        held.add(row.id)
    return held


def suppress_refused(session: Session, subscriber_id: int, *, reason: str, now: datetime) -> None:
    """Bounce a recipient the relay refused for good, unless that changed meanwhile.

    The row is locked and read afresh (another transaction may have just changed it): a complaint
    stands (it is not turned into a bounce), and a deleted or erased subscriber is nothing to do, so
    the rest of the flush, its sent marks above all, is written.
    """
    subscriber = session.get(
        Subscriber, subscriber_id, with_for_update=True, populate_existing=True
    )
    if subscriber is None:
        return
    with contextlib.suppress(IllegalTransition):  # a complaint already stands
        if suppress(subscriber, SubscriberStatus.BOUNCED, reason=reason[:2000], now=now):
            events.emit_about(
                session,
                events.SUBSCRIBER_SUPPRESSED,
                subscriber,
                now=now,
                status=SubscriberStatus.BOUNCED.value,
                reason=reason[:500],
            )
