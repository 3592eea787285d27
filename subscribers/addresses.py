"""Email address normalisation, by email-validator."""

from __future__ import annotations

from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email

from subscribers.errors import InvalidAddress


@dataclass(frozen=True, slots=True)
class Address:
    """A valid address: ``email`` as it is stored and shown, ``key`` as it is compared."""

    email: str
    key: str


def normalise(raw: str) -> Address:
    """Validate an address and return its stored and comparison forms.

    The domain is lower-cased (and compared in its ASCII form, so that an internationalised domain and
    its punycode match); the local part keeps its case for display but is compared case-insensitively.
    No DNS lookups are made: those belong to delivery, where bounces decide.
    """
    candidate = raw.strip()
    if any(char in candidate for char in "\r\n\x00"):
        raise InvalidAddress(f"{raw!r} is not a valid email address: it contains a line break")
    if not candidate:
        raise InvalidAddress("the email address is empty")
    try:
        result = validate_email(candidate, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidAddress(f"{candidate!r} is not a valid email address: {exc}") from None
    key = f"{result.local_part.lower()}@{result.ascii_domain.lower()}"
    return Address(email=result.normalized, key=key)
