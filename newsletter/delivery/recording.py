"""Recording what became of claimed deliveries: sent, retried with backoff, failed, or deferred.

A sent row is written in one executemany per flush; every other outcome moves its row through the
delivery state machine (:mod:`newsletter.delivery.states`), guarded by this worker's lease.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, assert_never

from sqlalchemy import bindparam, update
from sqlalchemy.orm import Session

from newsletter.delivery.recipients import suppress_refused
from newsletter.delivery.states import may_become, move_rows
from newsletter.delivery.transports import Outcome
from newsletter.models import Delivery, DeliveryStatus

RETRY_BASE = timedelta(minutes=2)
RETRY_CAP = timedelta(hours=2)


@dataclass(frozen=True, slots=True)
class Recorded:
    """The outcome of one claimed delivery, to write back."""

    delivery_id: int
    subscriber_id: int
    outcome: Outcome
    attempts: int
    message_id: str | None = None
    variant_key: str | None = None
    detail: str = ""
    suppress_recipient: bool = False
    queued_at: datetime | None = None
    code: int | None = None
    #: For a deferred one: seconds until the route has room again.
    defer_seconds: float = 0.0

    def __post_init__(self) -> None:
        # Its value ("sent", "retry", ...) is accepted too; anything else fails here, not later.
        object.__setattr__(self, "outcome", Outcome(self.outcome))


def backoff(attempts: int, *, rng: random.Random | None = None) -> timedelta:
    """Exponential backoff with full jitter: up to 2 min × 2^(attempts-1), capped at 2 h."""
    ceiling = min(RETRY_BASE * (1 << min(max(attempts - 1, 0), 16)), RETRY_CAP)
    draw = rng.random() if rng is not None else random.random()
    return ceiling * (0.5 + 0.5 * draw)


_MARK_SENT = (
    update(Delivery)
    .where(Delivery.id == bindparam("b_id"), may_become(DeliveryStatus.SENT))
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
    are written with one executemany; the rest one by one, each only while this worker holds it.
    """
    sent = [result for result in results if result.outcome is Outcome.SENT]
    if sent:
        _mark_sent(session, sent, now=now)
    for result in results:
        step = _next_state(result, now=now, max_attempts=max_attempts, max_age=max_age)
        if step is None:
            continue  # sent: written above
        to, values = step
        move_rows(
            session,
            Delivery.id == result.delivery_id,
            Delivery.lease_owner == owner,
            to=to,
            lease_owner=None,
            lease_until=None,
            **values,
        )
        if result.suppress_recipient:
            suppress_refused(
                session,
                result.subscriber_id,
                reason=f"refused by the mail server: {result.detail}",
                now=now,
            )


def _next_state(
    result: Recorded, *, now: datetime, max_attempts: int, max_age: timedelta
) -> tuple[DeliveryStatus, dict[str, Any]] | None:
    """Where a row goes after its outcome, and what else it keeps; None for a sent one."""
    match result.outcome:
        case Outcome.DEFERRED:  # paced: not an attempt
            return DeliveryStatus.QUEUED, {
                "not_before": now + timedelta(seconds=result.defer_seconds),
                "attempts": Delivery.attempts - 1,
            }
        case Outcome.RETRY:
            too_old = result.queued_at is not None and now - result.queued_at >= max_age
            if result.attempts < max_attempts and not too_old:
                return DeliveryStatus.QUEUED, {
                    "not_before": now + backoff(result.attempts),
                    "last_error": result.detail[:2000],
                }
            reason = f"gave up after {result.attempts} attempts: {result.detail}"
            return DeliveryStatus.FAILED, {"last_error": reason[:2000]}
        case Outcome.FAILED:
            return DeliveryStatus.FAILED, {"last_error": result.detail[:2000]}
        case Outcome.SENT:
            return None  # written for the whole flush in one statement
        case _:
            assert_never(result.outcome)
