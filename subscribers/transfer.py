"""Files of subscribers: import (all or nothing, under explicit limits) and CSV export.

The import reads this newsletter's CSV or another tool's export (:mod:`subscribers.import_file`), takes a
``transaction`` factory and writes in chunks inside one transaction; addresses already on the list
are counted, not changed, and suppressed ones stay suppressed. Rows the file shows as gone
(unsubscribed, cleaned, bounced, complained) are suppressed, never confirmed.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kernel import insert_ignoring_conflicts, utcnow
from subscribers import consent
from subscribers.errors import ImportFileError
from subscribers.formats import (
    ImportFormat,
)
from subscribers.import_file import ImportFile, ImportRow, RejectedRow
from subscribers.model import (
    SUPPRESSED,
    ConsentKind,
    Subscriber,
    SubscriberStatus,
    new_link_key,
    suppress,
    unsubscribe,
)
from subscribers.privacy import suppress_key, suppressed_keys
from subscribers.spreadsheet import neutralise

Transaction = Callable[[], AbstractContextManager[Session]]


EXPORT_COLUMNS = ("email", "name", "status", "timezone", "created_at", "confirmed_at")


@dataclass(slots=True)
class ImportReport:
    """What an import did, one count per outcome; a re-import of the same file only counts unchanged.

    ``added`` = ``confirmed`` + ``pending``; ``already_present`` and ``suppressed`` are the two kinds of
    unchanged rows (on the list already; suppressed here already, so never re-added);
    ``newly_suppressed`` counts addresses the file shows as unsubscribed, cleaned, bounced or
    complained that are suppressed now.
    """

    confirmed: int = 0
    pending: int = 0
    already_present: int = 0
    suppressed: int = 0
    newly_suppressed: int = 0
    rejected: list[RejectedRow] = field(default_factory=list)
    #: The format the file was read as (the one chosen, or the one ``auto`` found).
    format: str = ImportFormat.CSV.value

    @property
    def added(self) -> int:
        return self.confirmed + self.pending

    @property
    def unchanged(self) -> int:
        return self.already_present + self.suppressed

    @property
    def rows(self) -> int:
        return self.added + self.unchanged + self.newly_suppressed + len(self.rejected)


def _insert_ignoring_conflicts(session: Session, values: list[dict[str, Any]]) -> dict[str, int]:
    """Insert subscribers, skipping addresses that appeared meanwhile; return the ids by key."""
    statement = insert_ignoring_conflicts(session, Subscriber, index_elements=["email_key"])
    result = session.execute(statement.returning(Subscriber.email_key, Subscriber.id), values)
    return {row[0]: row[1] for row in result}


def import_rows(
    transaction: Transaction,
    rows: Iterable[ImportRow | RejectedRow],
    *,
    confirmed: bool,
    source: str,
    chunk_size: int = 500,
    progress: Callable[[int], None] | None = None,
    now: datetime | None = None,
) -> ImportReport:
    """Import rows in one transaction, written in chunks; good rows import even when others are
    rejected, and a file that turns out to be unusable partway through imports nothing.

    Addresses already on the list are counted, not changed; suppressed ones (unsubscribed, bounced,
    complained) stay suppressed.
    """
    report = ImportReport()
    chunk: list[ImportRow] = []
    if isinstance(rows, ImportFile):
        report.format = rows.chosen.value
    try:
        with transaction() as session:
            for row in rows:
                if isinstance(row, RejectedRow):
                    report.rejected.append(row)
                    if progress:
                        progress(1)
                    continue
                chunk.append(row)
                if len(chunk) >= chunk_size:
                    _write_chunk(
                        session, chunk, report, confirmed=confirmed, source=source, now=now
                    )
                    if progress:
                        progress(len(chunk))
                    chunk.clear()
            _write_chunk(session, chunk, report, confirmed=confirmed, source=source, now=now)
            if progress and chunk:
                progress(len(chunk))
        if isinstance(rows, ImportFile):
            report.format = rows.format.value
    except ImportFileError as exc:
        message = exc.message
        if "nothing was imported" not in message:
            message += "; nothing was imported"
        raise ImportFileError(message, hint=exc.hint) from None
    return report


def _status_of(row: ImportRow, *, confirmed: bool) -> SubscriberStatus:
    if row.status is not None:
        return row.status
    return SubscriberStatus.CONFIRMED if confirmed else SubscriberStatus.PENDING


def _source_of(row: ImportRow, source: str) -> str:
    return f"{source} ({row.origin})" if row.origin else source


def _write_chunk(
    session: Session,
    chunk: list[ImportRow],
    report: ImportReport,
    *,
    confirmed: bool,
    source: str,
    now: datetime | None,
) -> None:
    """Write one chunk of an import (in the import's transaction) and count what happened.

    A new address is added as confirmed or pending (as the file or the import says); a new address
    the file shows as unsubscribed, cleaned, bounced or complained is not added but suppressed by
    hash, as a deleted address that left is. Addresses already on the list are counted, not changed,
    unless the file shows they left after the consent held here; suppressed ones (unsubscribed,
    bounced, complained, or erased after leaving) stay suppressed.
    """
    if not chunk:
        return
    stamp = now or utcnow()
    keys = [row.key for row in chunk]
    existing = {
        subscriber.email_key: subscriber
        for subscriber in session.scalars(select(Subscriber).where(Subscriber.email_key.in_(keys)))
    }
    blocked = suppressed_keys(session, [row.key for row in chunk if row.key not in existing])
    fresh = [row for row in chunk if row.key not in existing and row.key not in blocked]
    joining = [row for row in fresh if _status_of(row, confirmed=confirmed) not in SUPPRESSED]
    inserted: dict[str, int] = {}
    if joining:
        values = []
        for row in joining:
            status = _status_of(row, confirmed=confirmed)
            consent_at = min(row.consent_at or stamp, stamp)
            values.append(
                {
                    "email": row.email,
                    "email_key": row.key,
                    "name": row.name,
                    "timezone": row.timezone,
                    "status": status,
                    "created_at": stamp,
                    "status_changed_at": stamp,
                    "confirmed_at": min(row.confirmed_at or stamp, stamp)
                    if status is SubscriberStatus.CONFIRMED
                    else None,
                    "consent_at": consent_at,
                    "consent_source": consent.clip(_source_of(row, source), 200),
                    "consent_ip": consent.clip(row.ip, 45),
                    "link_key": new_link_key(),
                    "legacy_links": False,
                    "paused": False,
                }
            )
        inserted = _insert_ignoring_conflicts(session, values)
        by_key = {row.key: row for row in joining}
        consent.append_imports(
            session,
            [
                consent.Imported(
                    subscriber_id=subscriber_id,
                    at=min(by_key[key].consent_at or stamp, stamp),
                    source=_source_of(by_key[key], source),
                    ip=by_key[key].ip,
                )
                for key, subscriber_id in inserted.items()
            ],
        )
    for row in chunk:
        if row.key in inserted:
            if _status_of(row, confirmed=confirmed) is SubscriberStatus.CONFIRMED:
                report.confirmed += 1
            else:
                report.pending += 1
            continue
        status = _status_of(row, confirmed=confirmed)
        subscriber = existing.get(row.key)
        if row.key in blocked or (subscriber is not None and subscriber.is_suppressed):
            report.suppressed += 1
        elif status not in SUPPRESSED:
            report.already_present += 1
        elif subscriber is None:
            suppress_key(session, row.key, reason=f"import: {status.value}", now=stamp)
            report.newly_suppressed += 1
        elif _left_after_consent(row, subscriber):
            _leave(session, subscriber, row, status, source=_source_of(row, source), now=stamp)
            report.newly_suppressed += 1
        else:
            report.already_present += 1


def _left_after_consent(row: ImportRow, subscriber: Subscriber) -> bool:
    """Whether the file's leaving is newer than the consent held here (unknown times: it is)."""
    given = subscriber.confirmed_at or subscriber.consent_at
    return row.left_at is None or given is None or row.left_at >= given


def _leave(
    session: Session,
    subscriber: Subscriber,
    row: ImportRow,
    status: SubscriberStatus,
    *,
    source: str,
    now: datetime,
) -> None:
    """Suppress a subscriber on the list whom the file shows as gone (left, bounced, complained)."""
    reason = consent.clip(f"import: {row.reason or status.value}", 200)
    if status is SubscriberStatus.UNSUBSCRIBED:
        unsubscribe(subscriber, now=now, reason=reason)
        consent.append(session, subscriber.id, ConsentKind.UNSUBSCRIBE, at=now, source=source)
    else:
        suppress(subscriber, status, reason=reason or status.value, now=now)


def export_csv(subscribers: Iterable[Subscriber], out: IO[str]) -> int:
    """Write subscribers as CSV (readable back by ``read_csv``); return the number written."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    written = 0
    for subscriber in subscribers:
        cells = [
            subscriber.email,
            subscriber.name or "",
            subscriber.status.value,
            subscriber.timezone or "",
            subscriber.created_at.isoformat(),
            subscriber.confirmed_at.isoformat() if subscriber.confirmed_at else "",
        ]
        writer.writerow([neutralise(cell) for cell in cells])
        written += 1
    return written
