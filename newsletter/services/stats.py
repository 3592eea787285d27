"""How many subscribers and editions there are, by status: one definition for the CLI, the API and
``/metrics``.

The session-level functions count inside a caller's transaction; :func:`overview` opens its own.
The Prometheus gauges (:mod:`newsletter.services.metrics`) read these same counts.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.models import Issue, IssueStatus
from newsletter.services.queued import Transactions
from subscribers.model import SubscriberStatus, Suppression
from subscribers.service import count_paused, count_subscribers


@dataclass(frozen=True, slots=True)
class Overview:
    subscribers: dict[SubscriberStatus, int]
    paused: int
    suppressed_hashes: int
    editions: dict[IssueStatus, int]


def subscriber_counts(session: Session) -> dict[SubscriberStatus, int]:
    """Subscribers by status, every status present (zero when none)."""
    return count_subscribers(session)


def paused_count(session: Session) -> int:
    """Subscribers who paused their mail."""
    return count_paused(session)


def suppressed_hashes(session: Session) -> int:
    """Hashes kept of erased or deleted addresses that must stay off the list."""
    return session.scalar(select(func.count()).select_from(Suppression)) or 0


def edition_counts(session: Session) -> dict[IssueStatus, int]:
    """Editions by status, every status present (zero when none)."""
    counts = dict.fromkeys(IssueStatus, 0)
    for status, count in session.execute(select(Issue.status, func.count()).group_by(Issue.status)):
        counts[status] = count
    return counts


def overview(database: Transactions) -> Overview:
    """The counts the admin API's ``/api/stats`` shows, read in one transaction."""
    with database.transaction(readonly=True) as session:
        return Overview(
            subscribers=subscriber_counts(session),
            paused=paused_count(session),
            suppressed_hashes=suppressed_hashes(session),
            editions=edition_counts(session),
        )
