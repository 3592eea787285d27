"""One error hierarchy. Each error carries a message an operator can act on.

The CLI prints ``str(error)`` without a traceback and exits with ``error.exit_code``.
"""

from __future__ import annotations


class NewsletterError(Exception):
    """Base of every error the newsletter raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


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


def operator_errors() -> tuple[type[Exception], ...]:
    """Every error whose message is meant for the operator: ours and the subscriber list's."""
    from subscribers.errors import SubscriberError

    return (NewsletterError, SubscriberError)
