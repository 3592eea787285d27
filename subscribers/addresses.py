"""Email address normalisation, by email-validator."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from email_validator import EmailNotValidError, validate_email

from subscribers.errors import InvalidAddress


@dataclass(frozen=True, slots=True)
class Address:
    """A valid address: ``email`` as it is stored and shown, ``key`` as it is compared."""

    email: str
    key: str


@lru_cache(maxsize=4096)
def normalise(raw: str) -> Address:
    """Validate an address and return its stored and comparison forms.

    Remembered for the latest few thousand inputs (a pure function: a form's address is checked by
    the page's service and again by the signup in the same request).

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


# Mailbox providers that deliver ``local+tag@domain`` to ``local@domain`` (plus tags), and those that
# also ignore dots in the local part. Only these fold variants into one mailbox: at any other domain
# ``a+b`` and ``a.b`` may be different people, so they count apart. ``CANONICAL_DOMAIN`` maps a
# provider's second name to its first (googlemail.com is gmail.com).
IGNORE_DOTS_AND_PLUS_TAGS = frozenset({"gmail.com", "googlemail.com"})
IGNORE_PLUS_TAGS = frozenset(
    {
        "outlook.com",
        "hotmail.com",
        "hotmail.co.uk",
        "live.com",
        "msn.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "fastmail.com",
        "fastmail.fm",
        "proton.me",
        "protonmail.com",
        "protonmail.ch",
        "pm.me",
        "yandex.com",
        "yandex.ru",
        "zoho.com",
        "hey.com",
        "mailbox.org",
        "posteo.de",
    }
)
CANONICAL_DOMAIN = {"googlemail.com": "gmail.com"}


def mailbox_key(key: str) -> str:
    """The mailbox an address reaches, for counting: plus-tag and dot variants fold into one.

    ``key`` is an :attr:`Address.key` (lower-cased). ``J.Doe+news@googlemail.com`` and
    ``jdoe@gmail.com`` give the same mailbox; ``ann+x@outlook.com`` gives ``ann@outlook.com`` but
    ``a.nn@outlook.com`` stays itself; an address at a domain not listed above is its own mailbox.
    """
    local, _, domain = key.rpartition("@")
    if domain in IGNORE_DOTS_AND_PLUS_TAGS:
        local = local.split("+", 1)[0].replace(".", "")
    elif domain in IGNORE_PLUS_TAGS:
        local = local.split("+", 1)[0]
    if not local:  # "+tag@gmail.com" names no mailbox of its own: count it as given
        return key
    return f"{local}@{CANONICAL_DOMAIN.get(domain, domain)}"
