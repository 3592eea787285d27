"""Moved to :mod:`kernel`; kept until every import names the kernel."""

from kernel import Base, BigId, UTCDateTime, insert_ignoring_conflicts, status_enum, utcnow

__all__ = ["Base", "BigId", "UTCDateTime", "insert_ignoring_conflicts", "status_enum", "utcnow"]
