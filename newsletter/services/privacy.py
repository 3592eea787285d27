"""Deleting, erasing, purging and exporting a subscriber together with what refers to them.

A subscriber's deliveries, subscription mails and the bounce and complaint reports about them
(which hold the address) go with the row; the export includes them. The rules of suppression live in
:mod:`subscribers.privacy`; this module adds the newsletter's own tables.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from newsletter.delivery import outbox
from newsletter.models import Bounce, Delivery, Issue, WebhookDelivery
from newsletter.services.queued import Transactions
from subscribers import privacy
from subscribers.addresses import normalise
from subscribers.errors import InvalidAddress, UnknownSubscriber
from subscribers.model import Subscriber


def release(session: Session, subscriber_id: int) -> None:
    """Before a subscriber row goes: its reports, its rows in the deliveries ledger, its
    subscription mails (sent or not) and the webhook messages about them go too."""
    outbox.forget_subscriber(session, subscriber_id)
    deliveries = select(Delivery.id).where(Delivery.subscriber_id == subscriber_id)
    session.execute(
        delete(Bounce).where(
            or_(Bounce.subscriber_id == subscriber_id, Bounce.delivery_id.in_(deliveries))
        )
    )
    session.execute(delete(Delivery).where(Delivery.subscriber_id == subscriber_id))
    # Webhook messages name the address: the queued and the delivered ones about them go too.
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.subscriber_id == subscriber_id))


def _reports_about(email: str) -> Any:
    """Reports naming this address, whether or not they were matched to a subscriber."""
    return func.lower(Bounce.recipient) == email.strip().lower()


def delete_subscriber(
    session: Session, subscriber_id: int, *, now: datetime
) -> privacy.Removal | None:
    """Delete one subscriber by id (None when there is none); a suppressed address keeps its hash."""
    subscriber = session.get(Subscriber, subscriber_id, with_for_update=True)
    if subscriber is None:
        return None
    return privacy.delete_subscriber(session, subscriber, release=release, now=now)


def delete_by_email(session: Session, email: str, *, now: datetime) -> privacy.Removal:
    """Delete the subscriber with this address; :class:`UnknownSubscriber` when there is none."""
    key = normalise(email).key
    found = session.scalar(select(Subscriber.id).where(Subscriber.email_key == key))
    removal = None if found is None else delete_subscriber(session, found, now=now)
    if removal is None:
        raise UnknownSubscriber(f"no subscriber has the address {email}")
    return removal


def erase(session: Session, email: str, *, now: datetime) -> privacy.Removal:
    """Erase everything held about ``email``, reports about it included; keep only its hash."""
    removal = privacy.erase(session, email, release=release, now=now)
    session.execute(delete(Bounce).where(_reports_about(email)))
    return removal


def purge_pending(
    session: Session, *, now: datetime, confirm_hours: int, grace_days: int, dry_run: bool = False
) -> int:
    """Purge signups never confirmed within the confirmation window plus the grace period."""
    before = now - timedelta(hours=confirm_hours) - timedelta(days=grace_days)
    return privacy.purge_pending(session, before=before, release=release, dry_run=dry_run, now=now)


def export(session: Session, email: str, *, now: datetime) -> dict[str, Any]:
    """Everything held about ``email``: the subscriber, consents, deliveries and reports."""
    data = privacy.export_data(session, email, now=now)
    subscriber = data["subscriber"]
    deliveries: list[dict[str, Any]] = []
    matches = [_reports_about(email)]
    if subscriber is not None:
        rows = session.execute(
            select(
                Issue.edition_date,
                Delivery.status,
                Delivery.sent_at,
                Delivery.message_id,
                Delivery.attempts,
                Delivery.last_error,
            )
            .join(Issue, Issue.id == Delivery.issue_id)
            .where(Delivery.subscriber_id == subscriber["id"])
            .order_by(Issue.edition_date)
        ).all()
        deliveries = [
            {
                "edition_date": row.edition_date.isoformat(),
                "status": row.status.value,
                "sent_at": row.sent_at.isoformat() if row.sent_at else None,
                "message_id": row.message_id,
                "attempts": row.attempts,
                "last_error": row.last_error,
            }
            for row in rows
        ]
        matches.append(Bounce.subscriber_id == subscriber["id"])
    try:
        key = normalise(email).key
        matches.append(func.lower(Bounce.recipient) == key)
    except InvalidAddress:
        pass
    reports = session.scalars(select(Bounce).where(or_(*matches)).order_by(Bounce.id)).all()
    data["deliveries"] = deliveries
    data["reports"] = [
        {
            "kind": report.kind.value,
            "recipient": report.recipient,
            "status": report.status,
            "diagnostic": report.diagnostic,
            "source": report.source,
            "received_at": report.received_at.isoformat(),
        }
        for report in reports
    ]
    return data


def export_address(database: Transactions, email: str, *, now: datetime) -> dict[str, Any]:
    """A request of access: :func:`export` in its own transaction."""
    with database.transaction(readonly=True) as session:
        return export(session, email, now=now)


def erase_address(database: Transactions, email: str, *, now: datetime) -> privacy.Removal:
    """A request of erasure: :func:`erase` in its own transaction."""
    with database.transaction() as session:
        return erase(session, email, now=now)
