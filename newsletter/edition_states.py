"""The edition's state machine: every change of ``Issue.status`` goes through :func:`move_edition`.

::

      build            start a send              no row queued or in flight
    ────────▶ draft ──────────────────▶ sending ─────────────────────────────▶ sent
                │                        │   ▲                                  │
                │ cancel                 │   └──────── follow-up send ──────────┘
                ▼                        │ cancel       (reopened for subscribers
            cancelled ◀──────────────────┘               who confirmed since)

A draft may be rebuilt as often as wanted (its status does not change); what is sending or sent is
what subscribers received. Pausing is not a state: it holds an edition that is being sent
(``paused_at``) and lifts again without changing its status.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy.orm import Session

from newsletter.delivery.states import move_rows
from newsletter.errors import IssueStateError
from newsletter.models import REBUILDABLE, Delivery, DeliveryStatus, Issue, IssueStatus

#: The allowed moves, and nothing else: from a status to the statuses it may become.
EDITION_MOVES: Mapping[IssueStatus, frozenset[IssueStatus]] = {
    IssueStatus.DRAFT: frozenset({IssueStatus.SENDING, IssueStatus.CANCELLED}),
    IssueStatus.SENDING: frozenset({IssueStatus.SENT, IssueStatus.CANCELLED}),
    IssueStatus.SENT: frozenset({IssueStatus.SENDING}),
    IssueStatus.CANCELLED: frozenset(),
}


def may_move_edition(current: IssueStatus, to: IssueStatus) -> bool:
    return to in EDITION_MOVES[current]


def move_edition(issue: Issue, to: IssueStatus, *, now: datetime) -> None:
    """Move ``issue`` to ``to`` and stamp when; raise :class:`IssueStateError` if not allowed.

    A follow-up send (sent → sending) keeps the time the first send started.
    """
    if not may_move_edition(issue.status, to):
        raise IssueStateError(
            f"the edition of {issue.edition_date} is {issue.status.value}; "
            f"it cannot become {to.value}"
        )
    if to is IssueStatus.SENDING and issue.status is IssueStatus.DRAFT:
        issue.sending_at = now
    elif to is IssueStatus.SENT:
        issue.sent_at = now
    elif to is IssueStatus.CANCELLED:
        issue.cancelled_at = now
    issue.status = to


def start_sending(issue: Issue, *, now: datetime) -> None:
    """draft → sending (an edition already sending stays so)."""
    if issue.status is IssueStatus.SENDING:
        return
    if issue.status not in REBUILDABLE:
        raise IssueStateError(
            f"the edition of {issue.edition_date} is {issue.status.value}; it cannot be sent"
        )
    move_edition(issue, IssueStatus.SENDING, now=now)


def finish_sending(issue: Issue, *, now: datetime) -> None:
    """sending → sent (when no delivery is queued or in flight)."""
    if issue.status is not IssueStatus.SENDING:
        raise IssueStateError(
            f"the edition of {issue.edition_date} is {issue.status.value}, not sending"
        )
    move_edition(issue, IssueStatus.SENT, now=now)


def pause(issue: Issue, *, now: datetime) -> bool:
    """Hold an edition: workers send none of it until it is resumed. False if already paused."""
    if issue.status in (IssueStatus.SENT, IssueStatus.CANCELLED):
        raise IssueStateError(
            f"the edition of {issue.edition_date} is {issue.status.value}; there is nothing to pause"
        )
    if issue.paused_at is not None:
        return False
    issue.paused_at = now
    return True


def resume(issue: Issue) -> bool:
    """Lift a pause. False if the edition was not paused."""
    if issue.paused_at is None:
        return False
    issue.paused_at = None
    return True


def cancel(session: Session, issue: Issue, *, now: datetime) -> int:
    """Stop an edition for good: what is still queued is failed with the reason; return how many."""
    if issue.status is IssueStatus.SENT:
        raise IssueStateError(
            f"the edition of {issue.edition_date} was already sent; it cannot be cancelled"
        )
    if issue.status is IssueStatus.CANCELLED:
        return 0
    move_edition(issue, IssueStatus.CANCELLED, now=now)
    return move_rows(
        session,
        Delivery.issue_id == issue.id,
        Delivery.status == DeliveryStatus.QUEUED,
        to=DeliveryStatus.FAILED,
        last_error="edition cancelled by an operator",
    )
