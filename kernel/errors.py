"""The root of the one error hierarchy. Each error carries a message an operator can act on.

The newsletter's errors (``newsletter.errors``) and the subscriber list's (``subscribers.errors``)
derive from :class:`NewsletterError`, so the doors, the scheduler and the mails catch this one class.
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
