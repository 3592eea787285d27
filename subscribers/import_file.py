"""Reading an import file: this newsletter's CSV or another tool's export (:mod:`subscribers.formats`),
row by row under explicit limits, each row either an :class:`ImportRow` or a :class:`RejectedRow`
with its line and reason. :mod:`subscribers.transfer` writes what is read.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from subscribers.addresses import normalise
from subscribers.csvlimits import (
    DEFAULT_MAX_FIELD_CHARS,
    DEFAULT_MAX_LINE_CHARS,
    bounded_records,
)
from subscribers.errors import ImportFileError, SubscriberError
from subscribers.formats import (
    Columns,
    ImportFormat,
    Provider,
    Reading,
    detect,
    listmonk_timezone,
    provider_for,
)
from subscribers.model import (
    SUPPRESSED,
    SubscriberStatus,
)
from subscribers.service import check_timezone, clean_name
from subscribers.spreadsheet import restore


@dataclass(frozen=True, slots=True)
class ImportRow:
    line: int
    email: str
    key: str
    name: str | None
    timezone: str | None
    #: The status the file gives; None for a plain CSV row (confirmed or pending as the import says).
    status: SubscriberStatus | None = None
    consent_at: datetime | None = None
    confirmed_at: datetime | None = None
    #: When the address left, bounced or complained at the provider.
    left_at: datetime | None = None
    #: Where the consent came from at the provider, added to the import's own source.
    origin: str | None = None
    ip: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class RejectedRow:
    line: int
    value: str
    reason: str


class ImportFile:
    """The rows of an import file, read when iterated; ``format`` is known once the header is read."""

    def __init__(
        self, path: Path, *, chosen: ImportFormat, max_field_chars: int, max_line_chars: int
    ) -> None:
        self.path = path
        self.chosen = chosen
        self.format = chosen
        self.max_field_chars = max_field_chars
        self.max_line_chars = max_line_chars

    def __iter__(self) -> Iterator[ImportRow | RejectedRow]:
        path = self.path
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
            yield from self._rows(
                bounded_records(
                    handle,
                    path=path,
                    max_field_chars=self.max_field_chars,
                    max_line_chars=self.max_line_chars,
                )
            )

    def _rows(self, reader: Iterator[tuple[int, list[str]]]) -> Iterator[ImportRow | RejectedRow]:
        path = self.path
        _, header = next(reader, (0, None))
        if header is None:
            raise ImportFileError(
                f"import file {path} is empty", hint="the first row must name the columns"
            )
        columns = Columns(header)
        chosen = detect(columns) if self.chosen is ImportFormat.AUTO else self.chosen
        self.format = chosen
        provider: Provider | None = None
        if chosen is ImportFormat.CSV:
            if not columns.has("email"):
                raise ImportFileError(
                    f"import file {path} has no 'email' column "
                    f"(its columns: {', '.join(header) or 'none'})",
                    hint="the first row must be a header such as: email,name,timezone"
                    + (
                        ""
                        if self.chosen is ImportFormat.CSV
                        else "; or choose the tool the file was exported from with --from"
                    ),
                )
        else:
            provider = provider_for(chosen, columns, path=path)
        email_at = columns.at[columns.first(*(provider.email if provider else ("email",))) or ""]
        seen: dict[str, int] = {}
        for line, values in reader:
            if not values or all(not value.strip() for value in values):
                continue
            values = [restore(value) for value in values]
            raw = values[email_at].strip() if email_at < len(values) else ""
            if len(values) != len(header):
                yield RejectedRow(
                    line, raw, f"has {len(values)} fields where the header has {len(header)}"
                )
                continue
            try:
                address = normalise(raw)
                reading = _reading(provider, columns, values)
                name = clean_name(_name(columns, values))
                zone = check_timezone(_zone(provider, columns, values))
            except SubscriberError as exc:
                yield RejectedRow(line, raw, exc.message)
                continue
            if address.key in seen:
                yield RejectedRow(line, raw, f"duplicate of line {seen[address.key]}")
                continue
            seen[address.key] = line
            yield ImportRow(
                line,
                address.email,
                address.key,
                name,
                zone,
                status=reading.status,
                consent_at=reading.consent_at,
                confirmed_at=reading.confirmed_at,
                left_at=reading.left_at,
                origin=reading.source,
                ip=reading.ip,
                reason=reading.reason,
            )


def read_csv(
    path: Path,
    *,
    source_format: ImportFormat = ImportFormat.AUTO,
    max_field_chars: int = DEFAULT_MAX_FIELD_CHARS,
    max_line_chars: int = DEFAULT_MAX_LINE_CHARS,
) -> ImportFile:
    """Read an import file: this newsletter's CSV (a header row with an ``email`` column, optional
    ``name`` and ``timezone``) or the subscriber export of another tool (see
    :mod:`subscribers.formats`); ``auto`` tells which by the header.

    Yields one valid row or one rejected row (with its line number and reason) per data line; raises
    :class:`ImportFileError` when the file as a whole cannot be used, including a field or a line
    over its limit (see :mod:`subscribers.csvlimits`).
    """
    return ImportFile(
        path,
        chosen=ImportFormat(source_format),
        max_field_chars=max_field_chars,
        max_line_chars=max_line_chars,
    )


def _reading(provider: Provider | None, columns: Columns, values: list[str]) -> Reading:
    if provider is not None:
        return provider.read(columns, values)
    # This newsletter's own export has a status column: an address that left stays suppressed.
    status = (columns.value(values, "status") or "").lower()
    if status in {state.value for state in SUPPRESSED}:
        return Reading(SubscriberStatus(status), reason=status)
    return Reading()


def _name(columns: Columns, values: list[str]) -> str | None:
    if columns.has("name"):
        return columns.value(values, "name")
    parts = (
        columns.value(values, "first name", "first_name", "firstname"),
        columns.value(values, "last name", "last_name", "lastname"),
    )
    return " ".join(part for part in parts if part) or None


def _zone(provider: Provider | None, columns: Columns, values: list[str]) -> str | None:
    if provider is not None and provider.format is ImportFormat.LISTMONK:
        return listmonk_timezone(columns, values)
    return columns.value(values, "timezone", "time_zone")


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
