"""Files of subscribers: CSV import (all or nothing, under explicit limits) and export.

The import takes a ``transaction`` factory and writes in chunks inside one transaction; addresses
already on the list are counted, not changed, and suppressed ones stay suppressed.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kernel import insert_ignoring_conflicts, utcnow
from subscribers import consent
from subscribers.addresses import normalise
from subscribers.csvlimits import (
    DEFAULT_MAX_FIELD_CHARS,
    DEFAULT_MAX_LINE_CHARS,
    bounded_records,
)
from subscribers.errors import ImportFileError, SubscriberError
from subscribers.model import SUPPRESSED, ConsentKind, Subscriber, SubscriberStatus, new_link_key
from subscribers.privacy import suppressed_keys
from subscribers.service import check_timezone, clean_name
from subscribers.spreadsheet import neutralise, restore

Transaction = Callable[[], AbstractContextManager[Session]]


EXPORT_COLUMNS = ("email", "name", "status", "timezone", "created_at", "confirmed_at")


@dataclass(frozen=True, slots=True)
class ImportRow:
    line: int
    email: str
    key: str
    name: str | None
    timezone: str | None


@dataclass(frozen=True, slots=True)
class RejectedRow:
    line: int
    value: str
    reason: str


@dataclass(slots=True)
class ImportReport:
    added: int = 0
    already_present: int = 0
    suppressed: int = 0
    rejected: list[RejectedRow] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return self.added + self.already_present + self.suppressed + len(self.rejected)


def read_csv(
    path: Path,
    *,
    max_field_chars: int = DEFAULT_MAX_FIELD_CHARS,
    max_line_chars: int = DEFAULT_MAX_LINE_CHARS,
) -> Iterator[ImportRow | RejectedRow]:
    """Read an import file: a header row with an ``email`` column, optional ``name`` and ``timezone``.

    Yields one valid row or one rejected row (with its line number and reason) per data line; raises
    :class:`ImportFileError` when the file as a whole cannot be used, including a field or a line
    over its limit (see :mod:`subscribers.csvlimits`).
    """
    try:
        _check_utf8(path)
        handle = path.open(encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        raise ImportFileError(f"import file {path} does not exist") from None
    except IsADirectoryError:
        raise ImportFileError(f"import file {path} is a directory") from None
    except OSError as exc:
        raise ImportFileError(f"cannot read import file {path}: {exc.strerror}") from None
    with handle:
        yield from _read_rows(
            bounded_records(
                handle, path=path, max_field_chars=max_field_chars, max_line_chars=max_line_chars
            ),
            path,
        )


def _check_utf8(path: Path, chunk_size: int = 1 << 16) -> None:
    """Refuse a file that is not UTF-8 before any of its rows is imported (streaming, bounded memory)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    lines = 1
    with path.open("rb") as handle:
        while True:
            chunk = handle.read(chunk_size)
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                position = offset + exc.start - len(decoder.getstate()[0])
                line = lines + chunk[: max(exc.start, 0)].count(b"\n")
                raise ImportFileError(
                    f"import file {path} is not UTF-8 text ({exc.reason} at byte {position}, "
                    f"line {line}); nothing was imported",
                    hint="save it as 'CSV UTF-8' and try again",
                ) from None
            if not chunk:
                return
            offset += len(chunk)
            lines += chunk.count(b"\n")


def _read_rows(
    reader: Iterator[tuple[int, list[str]]], path: Path
) -> Iterator[ImportRow | RejectedRow]:
    _, header = next(reader, (0, None))
    if header is None:
        raise ImportFileError(
            f"import file {path} is empty", hint="the first row must name the columns"
        )
    columns = [name.strip().lower() for name in header]
    if "email" not in columns:
        raise ImportFileError(
            f"import file {path} has no 'email' column (its columns: {', '.join(header) or 'none'})",
            hint="the first row must be a header such as: email,name,timezone",
        )
    email_at = columns.index("email")
    name_at = columns.index("name") if "name" in columns else None
    zone_at = columns.index("timezone") if "timezone" in columns else None
    seen: dict[str, int] = {}
    for line, values in reader:
        if not values or all(not value.strip() for value in values):
            continue
        values = [restore(value) for value in values]
        raw = values[email_at].strip() if email_at < len(values) else ""
        if len(values) != len(columns):
            yield RejectedRow(
                line, raw, f"has {len(values)} fields where the header has {len(columns)}"
            )
            continue
        try:
            address = normalise(raw)
            name = clean_name(values[name_at]) if name_at is not None else None
            zone = check_timezone(values[zone_at]) if zone_at is not None else None
        except SubscriberError as exc:
            yield RejectedRow(line, raw, exc.message)
            continue
        if address.key in seen:
            yield RejectedRow(line, raw, f"duplicate of line {seen[address.key]}")
            continue
        seen[address.key] = line
        yield ImportRow(line, address.email, address.key, name, zone)


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
    except ImportFileError as exc:
        message = exc.message
        if "nothing was imported" not in message:
            message += "; nothing was imported"
        raise ImportFileError(message, hint=exc.hint) from None
    return report


def _write_chunk(
    session: Session,
    chunk: list[ImportRow],
    report: ImportReport,
    *,
    confirmed: bool,
    source: str,
    now: datetime | None,
) -> None:
    """Insert one chunk of an import (in the import's transaction) and count what happened.

    Addresses already on the list are counted, not changed; suppressed ones (unsubscribed, bounced,
    complained, or erased after leaving) stay suppressed.
    """
    if not chunk:
        return
    stamp = now or utcnow()
    keys = [row.key for row in chunk]
    existing = dict(
        session.execute(
            select(Subscriber.email_key, Subscriber.status).where(Subscriber.email_key.in_(keys))
        ).all()
    )
    blocked = suppressed_keys(session, [row.key for row in chunk if row.key not in existing])
    fresh = [row for row in chunk if row.key not in existing and row.key not in blocked]
    inserted: dict[str, int] = {}
    if fresh:
        inserted = _insert_ignoring_conflicts(
            session,
            [
                {
                    "email": row.email,
                    "email_key": row.key,
                    "name": row.name,
                    "timezone": row.timezone,
                    "status": SubscriberStatus.CONFIRMED if confirmed else SubscriberStatus.PENDING,
                    "created_at": stamp,
                    "status_changed_at": stamp,
                    "confirmed_at": stamp if confirmed else None,
                    "consent_at": stamp,
                    "consent_source": source,
                    "link_key": new_link_key(),
                    "legacy_links": False,
                    "paused": False,
                }
                for row in fresh
            ],
        )
        consent.append_many(
            session, inserted.values(), ConsentKind.IMPORTED, at=stamp, source=source
        )
    report.added += len(inserted)
    for row in chunk:
        if row.key in inserted:
            continue
        if existing.get(row.key) in SUPPRESSED or row.key in blocked:
            report.suppressed += 1
        else:
            report.already_present += 1


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
