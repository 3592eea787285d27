"""How many subscribers and editions there are, by status: one definition for the CLI, the API and
``/metrics``.

The session-level functions count inside a caller's transaction; :func:`overview` opens its own.
:func:`database_gauges` is what a Prometheus scrape reads from the database (None when the
database does not answer, so that the scrape can say so instead of failing).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.errors import NewsletterError
from newsletter.models import Issue, IssueStatus
from newsletter.observability import Gauge, Labels, delivery_gauges
from newsletter.services.queued import Transactions
from subscribers.model import Subscriber, SubscriberStatus, Suppression
from subscribers.service import count_subscribers


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
    query = select(func.count()).select_from(Subscriber).where(Subscriber.paused.is_(True))
    return session.scalar(query) or 0


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


def database_gauges(
    database: Transactions, *, detailed: bool, clock: Callable[[], datetime]
) -> list[Gauge] | None:
    """The gauges of a scrape: editions and deliveries, and with ``detailed`` the subscribers.

    Subscriber counts are for the admin's scrape only (a public count would tell whether a signup
    was of a new address). None when the database does not answer.
    """
    try:
        with database.transaction(readonly=True) as session:
            subscribers = _subscriber_gauges(session) if detailed else []
            editions: dict[Labels, float] = {
                (("status", status.value),): float(count)
                for status, count in edition_counts(session).items()
                if count
            }
            delivery = delivery_gauges(session, now=clock())
    except NewsletterError:
        return None
    return [
        Gauge("newsletter_editions", "Editions by status.", editions),
        *subscribers,
        *delivery,
    ]


def _subscriber_gauges(session: Session) -> list[Gauge]:
    by_status: dict[Labels, float] = {
        (("status", status.value),): float(count)
        for status, count in subscriber_counts(session).items()
        if count
    }
    paused = float(paused_count(session))
    return [
        Gauge("newsletter_subscribers", "Subscribers by status.", by_status),
        Gauge("newsletter_subscribers_paused", "Subscribers who paused.", {(): paused}),
    ]
