"""One error hierarchy: every error meant for the operator derives from the kernel's root."""

from __future__ import annotations

import pytest

import newsletter.errors
import subscribers.errors
from kernel.errors import NewsletterError


def _errors(module: object) -> list[type[Exception]]:
    return [
        value
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, Exception)
    ]


@pytest.mark.parametrize(
    "error",
    _errors(newsletter.errors) + _errors(subscribers.errors),
    ids=lambda error: error.__name__,
)
def test_every_error_derives_from_the_kernel_root(error: type[Exception]) -> None:
    assert issubclass(error, NewsletterError)


def test_the_newsletter_root_is_the_kernel_root() -> None:
    assert newsletter.errors.NewsletterError is NewsletterError


def test_a_subscriber_error_keeps_its_message_hint_and_exit_code() -> None:
    error = subscribers.errors.InvalidAddress("bad address", hint="check it")
    assert str(error) == "bad address\n  hint: check it"
    assert error.exit_code == 2
    assert subscribers.errors.UnknownSubscriber("nobody").exit_code == 1
