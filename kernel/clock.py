"""The one clock default: the current time, in UTC, time-zone aware."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


#: Where the time comes from: ``utcnow`` in production, a fixed or stepping clock in tests.
Clock = Callable[[], datetime]
