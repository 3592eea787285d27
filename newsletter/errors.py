"""The newsletter's errors, under the kernel's root :class:`NewsletterError` (one hierarchy).

Each error carries a message an operator can act on. The subscriber list's errors
(``subscribers.errors``) derive from the same root, so catching ``NewsletterError`` catches both.
The CLI prints ``str(error)`` without a traceback and exits with ``error.exit_code``.
"""

from __future__ import annotations

from kernel.errors import NewsletterError

__all__ = [
    "ConfigError",
    "DatabaseError",
    "DeliveryStateError",
    "EditionRace",
    "IssueStateError",
    "NewsletterError",
    "PlacementConflict",
    "RenderError",
    "ReportError",
    "SourceError",
    "SponsorError",
    "TransportError",
    "UnknownEndpoint",
    "UnknownPlacement",
    "UsageError",
]


class ConfigError(NewsletterError):
    """The settings are invalid or a configuration file cannot be read."""

    exit_code = 2


class UsageError(NewsletterError):
    """A command was given an argument it cannot use (a bad date, a missing file)."""

    exit_code = 2


class DatabaseError(NewsletterError):
    """The database cannot be reached or is not migrated."""


class SourceError(NewsletterError):
    """A source (feed, market data) could not be fetched or parsed."""


class RenderError(NewsletterError):
    """An edition could not be rendered (a missing or broken template)."""


class IssueStateError(NewsletterError):
    """An edition is in a state that does not allow the requested move."""


class EditionRace(IssueStateError):
    """Another process created the same edition at the same moment (the other one won)."""


class TransportError(NewsletterError):
    """The mail transport cannot be used at all (unreachable host, bad credentials, no folder)."""


class DeliveryStateError(NewsletterError):
    """A delivery is in a state that does not allow the requested move."""


class ReportError(NewsletterError):
    """A bounce or complaint report (a provider's event, a posted message) cannot be read."""

    exit_code = 2


class SponsorError(NewsletterError):
    """A sponsor placement cannot be added or removed as asked (bad field, overlapping dates)."""

    exit_code = 2


class UnknownPlacement(SponsorError):
    """No sponsor placement has that id."""


class PlacementConflict(SponsorError):
    """A placement clashes with what exists: overlapping dates, or removing one that ran."""


class UnknownEndpoint(NewsletterError):
    """No webhook endpoint has the id given."""
