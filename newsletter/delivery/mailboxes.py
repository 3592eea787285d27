"""Mailboxes the newsletter reads: a Maildir folder or an mbox file (bounces, unsubscribe requests).

:func:`messages` reads every message and leaves the mailbox as it is (bounce reports are recorded
once in the database). :class:`Inbox` reads only what was not processed yet and moves each message
out of the way once it was handled: into the Maildir's ``.processed`` folder, or appended to
``FILE.processed`` beside an mbox and removed from it. A second read finds nothing new.
"""

from __future__ import annotations

import mailbox
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from newsletter.errors import UsageError

PROCESSED = "processed"


def _check(path: Path) -> None:
    if path.is_dir():
        if not (path / "new").is_dir() and not (path / "cur").is_dir():
            raise UsageError(f"{path} is a folder but not a Maildir (no new/ or cur/ inside)")
    elif not path.is_file():
        raise UsageError(f"{path} does not exist", hint="give a Maildir folder or an mbox file")
    else:
        with path.open("rb") as handle:
            start = handle.read(5)
        if start and start != b"From ":
            # Read as an mbox, it would hold no message at all: say so instead of reading nothing.
            raise UsageError(
                f"{path} is not an mbox (it does not start with a 'From ' line)",
                hint=(
                    "give a Maildir folder or an mbox file; one saved bounce report or provider "
                    "event is read by 'newsletter bounces receive FILE'"
                ),
            )


def messages(path: Path) -> Iterator[tuple[str, bytes]]:
    """Every message of a Maildir or mbox, as (key, raw bytes); the mailbox is not changed."""
    _check(path)
    if path.is_dir():
        box = mailbox.Maildir(path, factory=None, create=False)
        for key in box.iterkeys():
            yield f"maildir:{key}", box.get_bytes(key)
    else:
        for key, message in mailbox.mbox(path, create=False).iteritems():
            yield f"mbox:{key}", message.as_bytes()


class Inbox:
    """The unprocessed messages of a Maildir or mbox; ``done(key)`` moves one to the processed box.

    Use as a context manager: an mbox is locked while open (the mail server waits to append) and
    rewritten without the processed messages when closed.
    """

    def __init__(self, path: Path) -> None:
        _check(path)
        self.path = path
        self._box: mailbox.Mailbox[mailbox.Message]
        self._processed: mailbox.Mailbox[mailbox.Message]
        if path.is_dir():
            self._box = mailbox.Maildir(path, create=False)
            self._processed = self._box.add_folder(PROCESSED)
        else:
            self._box = mailbox.mbox(path, create=False)
            self._processed = mailbox.mbox(path.with_name(f"{path.name}.{PROCESSED}"))
        self._box.lock()

    @property
    def processed_location(self) -> str:
        if self.path.is_dir():
            return str(self.path / f".{PROCESSED}")
        return str(self.path.with_name(f"{self.path.name}.{PROCESSED}"))

    def __enter__(self) -> Inbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        for key in list(self._box.iterkeys()):
            yield key, self._box.get_bytes(key)

    def done(self, key: str) -> None:
        """Move one handled message to the processed box (copied first: a crash loses nothing)."""
        message = self._box.get_message(key)
        self._processed.lock()
        try:
            self._processed.add(message)
            self._processed.flush()
        finally:
            self._processed.unlock()
        self._box.remove(key)

    def close(self) -> None:
        try:
            self._box.flush()
        finally:
            self._box.unlock()
            self._box.close()
            self._processed.close()
