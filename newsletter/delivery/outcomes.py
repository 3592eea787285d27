"""What became of each message of a send, as the ledger records it, and a send's report.

:class:`~newsletter.delivery.sender.Sender` turns each transport answer (or a message that could
not be built) into a :class:`~newsletter.delivery.ledger.Recorded` outcome here, and counts it into
its :class:`DeliveryReport`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import assert_never

from newsletter.delivery import ledger
from newsletter.delivery.transports import Outcome, SendResult
from newsletter.models import DeliveryStatus

#: How a delivery whose message could not be built or sent is failed (kept in ``last_error``).
UNSENDABLE = "the message could not be built or sent"


@dataclass(slots=True)
class DeliveryReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    suppressed: int = 0
    deferred: int = 0
    batches: int = 0
    #: The edition was paused or cancelled while this sender was at work.
    held: bool = False
    finished: bool = False
    queued_later: int = 0
    next_due: datetime | None = None
    counts: dict[DeliveryStatus, int] = field(default_factory=dict)


def recorded(
    item: ledger.Claimed, result: SendResult, *, message_id: str, variant_key: str
) -> ledger.Recorded:
    return ledger.Recorded(
        delivery_id=item.delivery_id,
        subscriber_id=item.subscriber_id,
        outcome=result.outcome,
        attempts=item.attempts,
        message_id=message_id,
        variant_key=variant_key,
        detail=result.detail,
        suppress_recipient=result.recipient_rejected,
        queued_at=item.queued_at,
        code=result.code,
    )


def unsendable(item: ledger.Claimed, exc: Exception) -> ledger.Recorded:
    """A message that could not be built or handed over: its delivery fails with the reason."""
    reason = f"{type(exc).__name__}: {exc}".replace("\r", " ").replace("\n", " ")
    return ledger.Recorded(
        delivery_id=item.delivery_id,
        subscriber_id=item.subscriber_id,
        outcome=Outcome.FAILED,
        attempts=item.attempts,
        detail=f"{UNSENDABLE}: {reason}",
        queued_at=item.queued_at,
    )


def count(report: DeliveryReport, recorded: ledger.Recorded) -> None:
    match recorded.outcome:
        case Outcome.SENT:
            report.sent += 1
        case Outcome.RETRY:
            report.retried += 1
        case Outcome.FAILED:
            report.failed += 1
            if recorded.suppress_recipient:
                report.suppressed += 1
        case Outcome.DEFERRED:
            report.deferred += 1
        case _:
            assert_never(recorded.outcome)
