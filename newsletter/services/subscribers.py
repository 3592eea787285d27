"""The operator's view of the list: list and search, add, import, export, look up, delete.

The rules (who may be added, what an import does with a known or suppressed address) live in
:mod:`subscribers.service` and :mod:`subscribers.transfer`; this module holds the transactions
around them for the admin API and the CLI.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TextIO

from sqlalchemy import func, or_, select

from newsletter.config import Settings
from newsletter.services import privacy
from newsletter.services.queued import Transactions
from newsletter.services.subscriptions import (
    Mail,
    Recipient,
    SubscriptionMails,
    confirmation_mail,
    followable_coins,
    write_mail,
)
from newsletter.webhooks import events
from subscribers import signup
from subscribers.formats import ImportFormat
from subscribers.import_file import read_csv
from subscribers.model import Subscriber, SubscriberStatus
from subscribers.preferences import check_watchlist
from subscribers.privacy import Removal
from subscribers.service import add_subscriber, iter_subscribers
from subscribers.tokens import TokenSigner
from subscribers.transfer import EXPORT_COLUMNS, ImportReport, export_csv, import_rows

#: Subscribers per chunk of a streamed export.
EXPORT_CHUNK = 500


@dataclass(frozen=True, slots=True)
class Page:
    total: int
    items: list[Subscriber]


def search(
    database: Transactions,
    *,
    status: SubscriberStatus | None,
    text: str | None,
    limit: int,
    offset: int,
) -> Page:
    """Subscribers in id order, by status and a part of the address or name."""
    conditions = []
    if status is not None:
        conditions.append(Subscriber.status == status)
    if text:
        needle = text.strip().lower()
        conditions.append(
            or_(
                Subscriber.email_key.contains(needle, autoescape=True),
                func.lower(Subscriber.name).contains(needle, autoescape=True),
            )
        )
    with database.transaction(readonly=True) as session:
        total = session.scalar(select(func.count()).select_from(Subscriber).where(*conditions)) or 0
        rows = session.scalars(
            select(Subscriber)
            .where(*conditions)
            .order_by(Subscriber.id)
            .limit(limit)
            .offset(offset)
        ).all()
    return Page(total, list(rows))


@dataclass(frozen=True, slots=True)
class Added:
    subscriber: Subscriber
    created: bool
    #: The confirmation mail due (a new subscriber not added as confirmed), in the outbox when the
    #: caller gave the mails to write it.
    mail: Mail | None


def add(
    database: Transactions,
    *,
    signer: TokenSigner,
    email: str,
    name: str | None,
    mails: SubscriptionMails | None = None,
    timezone: str | None,
    confirmed: bool,
    source: str,
    now: datetime,
) -> Added:
    """Add one address; one already on the list is returned unchanged."""
    with database.transaction() as session:
        subscriber, created = add_subscriber(
            session,
            email,
            name=name,
            timezone=timezone,
            confirmed=confirmed,
            source=source,
            now=now,
        )
        mail = None
        if created and confirmed:
            events.emit_about(
                session, events.SUBSCRIBER_CONFIRMED, subscriber, now=now, via="operator"
            )
        if created and not confirmed:
            nonce = subscriber.confirm_nonce = signup.new_nonce()
            session.flush()
            recipient = Recipient(subscriber.id, subscriber.email, subscriber.link_key)
            mail = confirmation_mail(signer, recipient, nonce=nonce, now=now)
            write_mail(session, mails, mail, now=now)
    return Added(subscriber, created, mail)


def export_chunks(database: Transactions, *, status: SubscriberStatus | None) -> Iterator[str]:
    """The CSV export (readable by import), header first, streamed in chunks of rows."""
    header = io.StringIO()
    csv.writer(header, lineterminator="\n").writerow(EXPORT_COLUMNS)
    yield header.getvalue()
    with database.transaction(readonly=True) as session:
        chunk: list[Subscriber] = []
        for subscriber in iter_subscribers(session, status=status):
            chunk.append(subscriber)
            if len(chunk) >= EXPORT_CHUNK:
                yield _csv_rows(chunk)
                chunk.clear()
        yield _csv_rows(chunk)


def _csv_rows(subscribers: list[Subscriber]) -> str:
    out = io.StringIO()
    export_csv(subscribers, out)
    return out.getvalue().split("\n", 1)[1]  # without the header export_csv writes


def import_csv(
    database: Transactions,
    path: Path,
    *,
    settings: Settings,
    confirmed: bool,
    source: str,
    now: datetime | None,
    source_format: ImportFormat = ImportFormat.AUTO,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import a CSV file (email[,name,timezone]) or another tool's export (``source_format``, or
    told by the header); the good rows import, each bad one is reported."""
    return import_rows(
        database.transaction,
        read_csv(
            path,
            source_format=source_format,
            max_field_chars=settings.import_max_field_chars,
            max_line_chars=settings.import_max_line_chars,
        ),
        confirmed=confirmed,
        source=source,
        now=now,
        progress=progress,
    )


def each(database: Transactions, *, status: SubscriberStatus | None) -> Iterator[Subscriber]:
    """Every subscriber (of one status), in id order, read in batches in one transaction."""
    with database.transaction(readonly=True) as session:
        yield from iter_subscribers(session, status=status)


def export_to(database: Transactions, out: TextIO, *, status: SubscriberStatus | None) -> int:
    """Write the CSV export (readable by import) to ``out``; the number of subscribers written."""
    with database.transaction(readonly=True) as session:
        return export_csv(iter_subscribers(session, status=status), out)


def get(database: Transactions, subscriber_id: int) -> Subscriber | None:
    with database.transaction(readonly=True) as session:
        return session.get(Subscriber, subscriber_id)


def set_watchlist(
    database: Transactions,
    subscriber_id: int,
    coins: Sequence[str] | None,
    *,
    default: Sequence[str],
) -> Subscriber | None:
    """Set the coins a subscriber follows: any the market source returns (``None``: the
    newsletter's own). Unknown coins are refused (``InvalidPreferences``); None when there is no
    subscriber with that id."""
    followable = [coin.id for coin in followable_coins(database, default)]
    with database.transaction() as session:
        subscriber = session.get(Subscriber, subscriber_id, with_for_update=True)
        if subscriber is None:
            return None
        kept = [coin for coin in subscriber.watchlist or () if coin not in set(followable)]
        watchlist = (
            None
            if coins is None
            else check_watchlist(coins, coins=[*followable, *kept], default=default)
        )
        subscriber.watchlist = list(watchlist) if watchlist is not None else None
        return subscriber


def delete_address(database: Transactions, email: str, *, now: datetime) -> Removal:
    """Delete the subscriber with this address (an address that ever left stays suppressed)."""
    with database.transaction() as session:
        return privacy.delete_by_email(session, email, now=now)


def delete(database: Transactions, subscriber_id: int, *, now: datetime) -> Removal | None:
    """Delete a subscriber and what refers to them; None when there is none with that id."""
    with database.transaction() as session:
        return privacy.delete_subscriber(session, subscriber_id, now=now)
