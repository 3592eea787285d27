"""Reading an import file's records under explicit limits: no line, no field past its cap.

A physical line is read no further than its limit, so a hostile file (a megabyte without a line
break, a field of 200,000 characters) costs bounded memory and ends in an error that names the line,
the limit and the setting that raises it.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from subscribers.errors import ImportFileError

DEFAULT_MAX_FIELD_CHARS = 1000
DEFAULT_MAX_LINE_CHARS = 10_000
FIELD_SETTING = "NEWSLETTER_IMPORT_MAX_FIELD_CHARS"
LINE_SETTING = "NEWSLETTER_IMPORT_MAX_LINE_CHARS"


class _Lines:
    """The file's physical lines, each read no further than ``max_chars`` (plus its line end)."""

    def __init__(self, handle: IO[str], *, path: Path, max_chars: int) -> None:
        self.handle = handle
        self.path = path
        self.max_chars = max_chars
        self.number = 0

    def __iter__(self) -> Iterator[str]:
        while line := self.handle.readline(self.max_chars + 2):
            self.number += 1
            if len(line.rstrip("\r\n")) > self.max_chars:
                raise ImportFileError(
                    f"import file {self.path}: line {self.number} is longer than the limit of "
                    f"{self.max_chars:,} characters",
                    hint=f"fix that line, or raise {LINE_SETTING} if such lines are expected",
                )
            yield line


def bounded_records(
    handle: IO[str], *, path: Path, max_field_chars: int, max_line_chars: int
) -> Iterator[tuple[int, list[str]]]:
    """``(line number, fields)`` of each CSV record; ``ImportFileError`` for a field or a line over
    its limit, or for text that is not CSV, with the line where it happened."""
    lines = _Lines(handle, path=path, max_chars=max_line_chars)
    # The csv module's field limit is process-wide; every import of a process uses the same setting.
    csv.field_size_limit(max_field_chars)
    reader = csv.reader(lines)
    while True:
        start = lines.number + 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if str(exc).startswith("field larger than field limit"):
                where = (
                    f"line {start}" if start == lines.number else f"lines {start}-{lines.number}"
                )
                raise ImportFileError(
                    f"import file {path}: {where} hold a field longer than the limit of "
                    f"{max_field_chars:,} characters",
                    hint=f"fix that line (a quote left open runs on over the lines after it), "
                    f"or raise {FIELD_SETTING} if such fields are expected",
                ) from None
            raise ImportFileError(
                f"import file {path} is not valid CSV at line {lines.number}: {exc}"
            ) from None
        yield reader.line_num, values
