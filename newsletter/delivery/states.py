"""The delivery's state machine: every change of ``Delivery.status`` is checked against one table.

::

                  claim (lease)
        queued ──────────────────▶ sending ──── accepted (2xx) ────▶ sent
          │  ▲                      │  │  │                           │
          │  └──────────────────────┘  │  │ the subscriber left       │
          │   retry later, paced,      │  │ after queueing            │
          │   released, lease expired  │  ▼                           │
          │                            │ suppressed                   │
          │ missed its window,         │ refused (5xx),               │ hard bounce
          │ edition cancelled          │ gave up                      │ after acceptance
          ▼                            ▼                              │
        failed ◀───────────────────────┴──────────────────────────────┘

    An accepted message is recorded ``sent`` from any state: a worker whose lease ran out may
    flush its sent marks after the row was put back, failed or held back meanwhile; the transport
    accepted it, so the ledger says so. For the same reason a hard bounce fails a suppressed row.

Rows move in bulk (``UPDATE … WHERE``), so the check is a condition of the statement
(:func:`may_become`, used by :func:`move_rows`); a single loaded row moves with
:func:`move_delivery`, which raises :class:`DeliveryStateError` on a forbidden move.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, Result, true, update
from sqlalchemy.orm import Session

from newsletter.errors import DeliveryStateError
from newsletter.models import Delivery, DeliveryStatus

_ALL = frozenset(DeliveryStatus)

#: The allowed moves, and nothing else: from a status to the statuses it may become.
DELIVERY_MOVES: Mapping[DeliveryStatus, frozenset[DeliveryStatus]] = {
    DeliveryStatus.QUEUED: frozenset(
        {DeliveryStatus.SENDING, DeliveryStatus.FAILED, DeliveryStatus.SENT}
    ),
    DeliveryStatus.SENDING: frozenset(
        {
            DeliveryStatus.QUEUED,
            DeliveryStatus.SENT,
            DeliveryStatus.FAILED,
            DeliveryStatus.SUPPRESSED,
        }
    ),
    DeliveryStatus.SENT: frozenset({DeliveryStatus.SENT, DeliveryStatus.FAILED}),
    DeliveryStatus.FAILED: frozenset({DeliveryStatus.SENT}),
    DeliveryStatus.SUPPRESSED: frozenset({DeliveryStatus.SENT, DeliveryStatus.FAILED}),
}


def may_move_delivery(current: DeliveryStatus, to: DeliveryStatus) -> bool:
    return to in DELIVERY_MOVES[current]


def sources_of(to: DeliveryStatus) -> frozenset[DeliveryStatus]:
    """Every status from which a delivery may become ``to``."""
    return frozenset(status for status, targets in DELIVERY_MOVES.items() if to in targets)


def only_source(to: DeliveryStatus) -> DeliveryStatus:
    """The one status from which a row may become ``to`` (a claim: only a queued row)."""
    [source] = sources_of(to)
    return source


def may_become(to: DeliveryStatus) -> ColumnElement[bool]:
    """The SQL condition that a row's current status may move to ``to``."""
    sources = sources_of(to)
    if sources == _ALL:
        return true()
    return Delivery.status.in_(sorted(sources))


def move_delivery(delivery: Delivery, to: DeliveryStatus) -> None:
    """Move one loaded row; raise :class:`DeliveryStateError` if the table does not allow it."""
    if not may_move_delivery(delivery.status, to):
        raise DeliveryStateError(
            f"delivery {delivery.id} is {delivery.status.value}; it cannot become {to.value}"
        )
    delivery.status = to


def bounce_delivery(delivery: Delivery, *, detail: str) -> None:
    """A hard bounce of an accepted message: its delivery failed after all, with the reason.

    A row already failed keeps failing, with the newer reason.
    """
    if delivery.status is not DeliveryStatus.FAILED:
        move_delivery(delivery, DeliveryStatus.FAILED)
    delivery.last_error = detail[:2000]


def _cursor(result: Result[Any]) -> CursorResult[Any]:
    """DML results carry a row count; the ORM's generic Result type does not say so."""
    return cast(CursorResult[Any], result)


def update_rows(session: Session, *conditions: ColumnElement[bool], **values: Any) -> int:
    """``UPDATE deliveries SET … WHERE …`` in one statement; return how many rows changed.

    Not for the status: that moves with :func:`move_rows`.
    """
    if "status" in values:
        raise ValueError("a delivery's status moves with move_rows, which checks the move")
    return _execute(session, conditions, values)


def move_rows(
    session: Session, *conditions: ColumnElement[bool], to: DeliveryStatus, **values: Any
) -> int:
    """Move every row matching ``conditions`` (and allowed to) to ``to``; return how many moved."""
    return _execute(session, (*conditions, may_become(to)), {"status": to, **values})


def _execute(
    session: Session, conditions: tuple[ColumnElement[bool], ...], values: dict[str, Any]
) -> int:
    result = _cursor(
        session.execute(
            update(Delivery)
            .where(*conditions)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
    )
    return max(result.rowcount, 0)
