"""The kernel: what every other package shares and nothing else.

The declarative ``Base`` and its column types, ``utcnow``, the root of the error hierarchy and the
database helpers used by both ``subscribers`` and ``newsletter``. It imports neither of them.
"""

from kernel.clock import Clock, utcnow
from kernel.db import (
    NAMING_CONVENTION,
    Base,
    BigId,
    UTCDateTime,
    insert_ignoring_conflicts,
    status_enum,
)
from kernel.errors import NewsletterError

__all__ = [
    "NAMING_CONVENTION",
    "Base",
    "BigId",
    "Clock",
    "NewsletterError",
    "UTCDateTime",
    "insert_ignoring_conflicts",
    "status_enum",
    "utcnow",
]
