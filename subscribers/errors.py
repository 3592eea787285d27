"""Errors of the subscriber list, under the kernel's ``NewsletterError`` (one hierarchy)."""

from __future__ import annotations

from kernel.errors import NewsletterError


class SubscriberError(NewsletterError):
    """Base of the subscriber list's errors; the message says what to do."""


class InvalidAddress(SubscriberError):
    """An email address that cannot receive mail (syntax, domain)."""

    exit_code = 2


class IllegalTransition(SubscriberError):
    """A status change the subscriber state machine does not allow."""


class UnknownSubscriber(SubscriberError):
    """No subscriber has that address or id."""


class ImportFileError(SubscriberError):
    """A CSV file that cannot be read at all (missing, not CSV, no email column)."""

    exit_code = 2


class BadToken(SubscriberError):
    """A signed link token that is forged, for another purpose, or expired."""


class SuppressedAddress(SubscriberError):
    """An address that left (or asked to be erased) and may not be re-added by an operator."""


class InvalidPreferences(SubscriberError):
    """Preferences that cannot be saved; ``problems`` maps each form field to what is wrong."""

    exit_code = 2

    def __init__(self, problems: dict[str, str]) -> None:
        super().__init__("; ".join(f"{field}: {text}" for field, text in problems.items()))
        self.problems = problems
