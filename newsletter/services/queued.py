"""Transactions for a process that serves many requests at once, its SQLite writers queued.

SQLite admits one writer at a time; threads that find it busy sleep and retry with growing pauses,
which makes the slowest requests wait far longer than the average. Queuing in the process hands the
lock over at once; other processes still wait on SQLite itself. Readers never queue.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

from sqlalchemy.orm import Session

from newsletter.db import Database


class Transactions(Protocol):
    """What a service needs of the database: ``with database.transaction() as session:``."""

    def transaction(self, *, readonly: bool = False) -> AbstractContextManager[Session]: ...


class QueuedWrites:
    """A :class:`Database` whose writing transactions take turns in this process (on SQLite)."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._lock = threading.Lock()

    @property
    def dialect(self) -> str:
        return self.database.dialect

    @contextmanager
    def transaction(self, *, readonly: bool = False) -> Iterator[Session]:
        if readonly or self.database.dialect != "sqlite":
            with self.database.transaction(readonly=readonly) as session:
                yield session
            return
        with self._lock, self.database.transaction() as session:
            yield session
