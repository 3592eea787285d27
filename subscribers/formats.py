"""The export files of other newsletter tools: which columns each has, and what its statuses mean.

Each provider's documented subscriber export is read by its own columns (see ``docs/imports.md``
for the table): the address, the name and time zone where the file has them, the status, and the
consent (when and from where). A status that says the person left, bounced or complained reads as
that suppression status, never as confirmed. ``auto`` tells the format by the header row; a file
that matches no provider is read as this newsletter's own CSV (``email[,name,timezone]``).
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from subscribers.errors import ImportFileError, SubscriberError
from subscribers.model import SubscriberStatus


class ImportFormat(enum.StrEnum):
    AUTO = "auto"
    CSV = "csv"
    MAILCHIMP = "mailchimp"
    SUBSTACK = "substack"
    BEEHIIV = "beehiiv"
    LISTMONK = "listmonk"
    BUTTONDOWN = "buttondown"


@dataclass(frozen=True, slots=True)
class Reading:
    """What one line of a provider's file says beyond the address, the name and the time zone."""

    status: SubscriberStatus | None = None
    #: When the person gave consent (opted in, signed up) at the provider.
    consent_at: datetime | None = None
    #: When they confirmed (double opt-in), where the file says so.
    confirmed_at: datetime | None = None
    #: When they left, bounced or complained, where the file says so.
    left_at: datetime | None = None
    #: Where the consent came from at the provider (a form, a campaign, a referrer).
    source: str | None = None
    ip: str | None = None
    #: Why the provider suppressed the address (its own words), kept as the status reason.
    reason: str | None = None


class Columns:
    """The header row of a file, looked up case-insensitively (the first column of a name wins)."""

    def __init__(self, header: list[str]) -> None:
        self.header = header
        self.at: dict[str, int] = {}
        for index, name in enumerate(header):
            self.at.setdefault(name.strip().lower(), index)

    def has(self, *names: str) -> bool:
        return any(name in self.at for name in names)

    def first(self, *names: str) -> str | None:
        """The first of ``names`` the file has."""
        return next((name for name in names if name in self.at), None)

    def value(self, values: list[str], *names: str) -> str | None:
        """The first non-empty value among these columns, stripped; None when there is none."""
        for name in names:
            index = self.at.get(name)
            if index is not None and index < len(values) and values[index].strip():
                return values[index].strip()
        return None


Reader = Callable[[Columns, list[str]], Reading]


@dataclass(frozen=True, slots=True)
class Provider:
    format: ImportFormat
    #: The export a provider's user downloads, as its documentation names it.
    export: str
    #: Columns that may hold the address, in order of preference.
    email: tuple[str, ...]
    #: Any one of these beside an address column marks the format for ``auto``.
    marks: tuple[str, ...]
    #: Columns the format cannot be read without (besides the address).
    required: tuple[str, ...]
    read: Reader


def parse_time(value: str | None, *, column: str) -> datetime | None:
    """A provider's time stamp as an aware UTC datetime (a time without offset is UTC).

    Reads ISO 8601 (``2024-03-01T09:30:00Z``, ``2024-03-01 09:30:00``), Go's default format of
    listmonk (``2024-03-01 09:30:00.123456 +0000 UTC``) and Unix seconds.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return datetime.fromtimestamp(int(text), tz=UTC)
    go = re.fullmatch(r"(\S+ \d{2}:\d{2}:\d{2})(?:\.\d+)? ([+-]\d{2})(\d{2})(?: [A-Za-z]+)?", text)
    if go is not None:
        hours, minutes = int(go.group(2)), int(go.group(3))
        offset = timedelta(hours=abs(hours), minutes=minutes) * (-1 if hours < 0 else 1)
        text = go.group(1)
        parsed = datetime.fromisoformat(text).replace(tzinfo=timezone(offset))
        return parsed.astimezone(UTC)
    if text.upper().endswith((" UTC", " GMT")):
        text = text[:-4]
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise SubscriberError(
            f"the {column} value {value!r} is not a date and time this import can read"
        ) from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("true", "t", "yes", "y", "1")


def _status(
    value: str | None, table: dict[str, SubscriberStatus], *, column: str
) -> SubscriberStatus:
    key = (value or "").strip().lower()
    if key not in table:
        known = ", ".join(sorted(table))
        raise SubscriberError(f"unknown {column} {value or '(empty)'!r} (known: {known})")
    return table[key]


def _joined(*parts: tuple[str, str | None]) -> str | None:
    found = [f"{name}={value}" for name, value in parts if value]
    return ", ".join(found) or None


# Mailchimp: the audience export is a zip of three files (subscribed, unsubscribed, cleaned) with
# the same columns, the unsubscribed file adding UNSUB_* and the cleaned one CLEAN_* columns.


def _mailchimp(columns: Columns, values: list[str]) -> Reading:
    optin = parse_time(columns.value(values, "optin_time"), column="OPTIN_TIME")
    confirm = parse_time(columns.value(values, "confirm_time"), column="CONFIRM_TIME")
    ip = columns.value(values, "confirm_ip", "optin_ip")
    consent = optin or confirm
    if columns.has("clean_time", "clean_campaign_title", "clean_campaign_id"):
        left = parse_time(columns.value(values, "clean_time"), column="CLEAN_TIME")
        return Reading(SubscriberStatus.BOUNCED, consent, confirm, left, "mailchimp", ip, "cleaned")
    if columns.has("unsub_time", "unsub_reason", "unsub_campaign_title"):
        left = parse_time(columns.value(values, "unsub_time"), column="UNSUB_TIME")
        why = columns.value(values, "unsub_reason", "unsub_reason_other")
        complaint = why is not None and re.search(r"abuse|spam", why, re.IGNORECASE) is not None
        status = SubscriberStatus.COMPLAINED if complaint else SubscriberStatus.UNSUBSCRIBED
        return Reading(status, consent, confirm, left, "mailchimp", ip, why or "unsubscribed")
    return Reading(SubscriberStatus.CONFIRMED, consent, confirm or consent, None, "mailchimp", ip)


# Substack: one file of every subscriber; email_disabled marks those who no longer get the emails.


def _substack(columns: Columns, values: list[str]) -> Reading:
    created = parse_time(columns.value(values, "created_at"), column="created_at")
    left = parse_time(columns.value(values, "unsubscribed_at"), column="unsubscribed_at")
    if _flag(columns.value(values, "email_disabled")) or left is not None:
        return Reading(
            SubscriberStatus.UNSUBSCRIBED, created, None, left, "substack", None, "unsubscribed"
        )
    plan = columns.value(values, "plan")
    source = "substack" + (f", plan={plan}" if plan else "")
    return Reading(SubscriberStatus.CONFIRMED, created, created, None, source)


BEEHIIV_STATUSES = {
    "active": SubscriberStatus.CONFIRMED,
    "validating": SubscriberStatus.PENDING,
    "pending": SubscriberStatus.PENDING,
    "needs_attention": SubscriberStatus.PENDING,
    "inactive": SubscriberStatus.UNSUBSCRIBED,
    "unsubscribed": SubscriberStatus.UNSUBSCRIBED,
    "invalid": SubscriberStatus.BOUNCED,
}


def _beehiiv(columns: Columns, values: list[str]) -> Reading:
    raw = columns.value(values, "status")
    status = _status(raw, BEEHIIV_STATUSES, column="beehiiv status")
    created = parse_time(columns.value(values, "created_at"), column="created_at")
    source = _joined(
        *(
            (name, columns.value(values, name))
            for name in (
                "utm_source",
                "utm_medium",
                "utm_channel",
                "utm_campaign",
                "referring_site",
            )
        )
    )
    confirmed = created if status is SubscriberStatus.CONFIRMED else None
    left = parse_time(columns.value(values, "unsubscribed_at"), column="unsubscribed_at")
    reason = raw if status in (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED) else None
    return Reading(
        status, created, confirmed, left, f"beehiiv{', ' + source if source else ''}", None, reason
    )


LISTMONK_STATUSES = {
    "enabled": SubscriberStatus.CONFIRMED,
    "disabled": SubscriberStatus.PENDING,
    "blocklisted": SubscriberStatus.UNSUBSCRIBED,
}


def _listmonk(columns: Columns, values: list[str]) -> Reading:
    raw = columns.value(values, "status")
    status = _status(raw, LISTMONK_STATUSES, column="listmonk status")
    created = parse_time(columns.value(values, "created_at"), column="created_at")
    confirmed = created if status is SubscriberStatus.CONFIRMED else None
    reason = raw if status is SubscriberStatus.UNSUBSCRIBED else None
    return Reading(status, created, confirmed, None, "listmonk", None, reason)


def listmonk_timezone(columns: Columns, values: list[str]) -> str | None:
    """A ``timezone`` (or ``tz``) key of listmonk's JSON attributes, when there is one."""
    raw = columns.value(values, "attributes")
    if not raw:
        return None
    try:
        attributes = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(attributes, dict):
        return None
    zone = attributes.get("timezone", attributes.get("tz"))
    return zone if isinstance(zone, str) else None


BUTTONDOWN_STATUSES = {
    **dict.fromkeys(
        (
            "regular",
            "premium",
            "trialed",
            "unpaid",
            "gifted",
            "churning",
            "churned",
            "paused",
            "past_due",
        ),
        SubscriberStatus.CONFIRMED,
    ),
    "unactivated": SubscriberStatus.PENDING,
    "unsubscribed": SubscriberStatus.UNSUBSCRIBED,
    "removed": SubscriberStatus.UNSUBSCRIBED,
    "spammy": SubscriberStatus.BOUNCED,
    "undeliverable": SubscriberStatus.BOUNCED,
    "bounced": SubscriberStatus.BOUNCED,
    "complained": SubscriberStatus.COMPLAINED,
}


def _buttondown(columns: Columns, values: list[str]) -> Reading:
    raw = columns.value(values, "subscriber_type", "type")
    status = _status(raw, BUTTONDOWN_STATUSES, column="Buttondown subscriber type")
    created = parse_time(
        columns.value(values, "creation_date", "created_date"), column="creation_date"
    )
    source = _joined(
        *(
            (name, columns.value(values, name))
            for name in ("source", "utm_source", "utm_medium", "utm_campaign", "referrer_url")
        )
    )
    confirmed = created if status is SubscriberStatus.CONFIRMED else None
    left = parse_time(columns.value(values, "unsubscription_date"), column="unsubscription_date")
    reason = (
        raw
        if status
        in (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED)
        else None
    )
    return Reading(
        status,
        created,
        confirmed,
        left,
        f"buttondown{', ' + source if source else ''}",
        None,
        reason,
    )


PROVIDERS: dict[ImportFormat, Provider] = {
    provider.format: provider
    for provider in (
        Provider(
            ImportFormat.MAILCHIMP,
            "Audience → Export audience: the subscribed, unsubscribed and cleaned CSV files",
            email=("email address",),
            marks=("member_rating", "optin_time", "confirm_time", "leid", "euid"),
            required=(),
            read=_mailchimp,
        ),
        Provider(
            ImportFormat.SUBSTACK,
            "Settings → Export: the email list CSV",
            email=("email",),
            marks=("active_subscription", "email_disabled"),
            required=(),
            read=_substack,
        ),
        Provider(
            ImportFormat.BEEHIIV,
            "Audience → Subscribers → Export CSV",
            email=("email",),
            marks=(
                "utm_source",
                "utm_medium",
                "utm_channel",
                "referring_site",
                "subscription_tier",
            ),
            required=("status",),
            read=_beehiiv,
        ),
        Provider(
            ImportFormat.LISTMONK,
            "Subscribers → Export (uuid, email, name, attributes, status, created_at, updated_at)",
            email=("email",),
            marks=("uuid",),
            required=("status", "attributes"),
            read=_listmonk,
        ),
        Provider(
            ImportFormat.BUTTONDOWN,
            "Subscribers → Export: the subscribers CSV",
            email=("email", "email_address"),
            marks=("subscriber_type", "creation_date"),
            required=(),
            read=_buttondown,
        ),
    )
}


def detect(columns: Columns) -> ImportFormat:
    """The provider whose export this header is (``csv`` when it is none of them)."""
    for provider in PROVIDERS.values():
        if (
            columns.has(*provider.email)
            and columns.has(*provider.marks)
            and all(columns.has(name) for name in provider.required)
        ):
            return provider.format
    return ImportFormat.CSV


def provider_for(chosen: ImportFormat, columns: Columns, *, path: object) -> Provider:
    """The provider of a chosen format, after checking the file has the columns it reads."""
    provider = PROVIDERS[chosen]
    missing = [name for name in provider.required if not columns.has(name)]
    if not columns.has(*provider.email):
        missing.insert(0, " or ".join(repr(name) for name in provider.email))
    if missing:
        raise ImportFileError(
            f"import file {path} is not a {chosen.value} export: it has no "
            f"{', '.join(missing)} column (its columns: {', '.join(columns.header) or 'none'})",
            hint=f"export it from {chosen.value} ({provider.export}), or choose the format the "
            "file is in with --from (auto tells it by the header)",
        )
    return provider
