"""The admin API's request and response bodies (pydantic), and the check of plain text fields."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field, field_validator

from newsletter.editions import BuildResult
from newsletter.models import IssueStatus
from newsletter.services.archive import EditionSummary
from newsletter.stories import Verdict
from subscribers import signup
from subscribers.formats import ImportFormat
from subscribers.model import Subscriber, SubscriberStatus
from subscribers.transfer import ImportReport

#: The largest id or offset a request may give (beyond it no row exists).
MAX_ID = 2**62


class Problem(BaseModel):
    error: str
    hint: str | None = None


def plain(value: str | None) -> str | None:
    """Refuse text a database cannot store or a header must not carry (NUL, line breaks, surrogates)."""
    if value is None:
        return None
    if any(char in value for char in "\r\n\x00"):
        raise ValueError("must not contain line breaks or NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


class SubscriberOut(BaseModel):
    id: int
    email: str
    name: str | None
    status: SubscriberStatus
    paused: bool
    format: str
    timezone: str | None
    send_hour: int | None
    watchlist: list[str] | None
    sections: list[str] | None
    created_at: datetime
    confirmed_at: datetime | None
    unsubscribed_at: datetime | None
    consent_source: str | None

    @classmethod
    def of(cls, subscriber: Subscriber) -> SubscriberOut:
        return cls(
            id=subscriber.id,
            email=subscriber.email,
            name=subscriber.name,
            status=subscriber.status,
            paused=bool(subscriber.paused),
            format=subscriber.format.value,
            timezone=subscriber.timezone,
            send_hour=subscriber.send_hour,
            watchlist=subscriber.watchlist,
            sections=subscriber.sections,
            created_at=subscriber.created_at,
            confirmed_at=subscriber.confirmed_at,
            unsubscribed_at=subscriber.unsubscribed_at,
            consent_source=subscriber.consent_source,
        )


class CoinOut(BaseModel):
    id: str = Field(description="The market data's coin id, e.g. monero.")
    label: str = Field(description="Its name and symbol, e.g. Monero (XMR).")


class CoinPage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[CoinOut]


class Watchlist(BaseModel):
    coins: list[str] | None = Field(
        max_length=100,
        description="Coin ids from GET /api/coins, in any order (stored in the list's order); "
        "null for the newsletter's own coins.",
    )


class SubscriberPage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[SubscriberOut]


class NewSubscriber(BaseModel):
    email: str = Field(min_length=1, max_length=320)
    name: str | None = Field(default=None, max_length=200)
    timezone: str | None = Field(default=None, max_length=64)
    confirmed: bool = Field(
        default=False,
        description="Add as confirmed (consent obtained elsewhere); otherwise a confirmation mail goes out.",
    )

    _text = field_validator("email", "name", "timezone")(plain)


class AddResult(BaseModel):
    created: bool
    subscriber: SubscriberOut


class Rejected(BaseModel):
    line: int
    value: str
    reason: str


class ImportResult(BaseModel):
    format: ImportFormat = Field(
        description="The format the file was read as (the one chosen, or the one auto found)."
    )
    added: int = Field(description="New subscribers: confirmed + pending.")
    confirmed: int = Field(description="New subscribers added as confirmed.")
    pending: int = Field(description="New subscribers added as pending (to confirm).")
    newly_suppressed: int = Field(
        description="Addresses the file shows as unsubscribed, cleaned, bounced or complained, "
        "suppressed now (never confirmed)."
    )
    unchanged: int = Field(description="already_present + suppressed: rows that changed nothing.")
    already_present: int = Field(description="Already on the list; not changed.")
    suppressed: int = Field(description="Suppressed here earlier (left); not re-added.")
    rejected: list[Rejected] = Field(description="Rows not imported, with their line and reason.")

    @classmethod
    def of(cls, report: ImportReport) -> ImportResult:
        return cls(
            format=ImportFormat(report.format),
            added=report.added,
            confirmed=report.confirmed,
            pending=report.pending,
            newly_suppressed=report.newly_suppressed,
            unchanged=report.unchanged,
            already_present=report.already_present,
            suppressed=report.suppressed,
            rejected=[
                Rejected(line=r.line, value=r.value, reason=r.reason) for r in report.rejected
            ],
        )


class Address(BaseModel):
    email: str = Field(min_length=1, max_length=320)

    _text = field_validator("email")(plain)


class UnsubscribeRequest(BaseModel):
    """One of ``email`` or ``token`` (the token of a List-Unsubscribe mailto: subject)."""

    email: str | None = Field(default=None, max_length=320)
    token: str | None = Field(default=None, max_length=500)

    _text = field_validator("email", "token")(plain)


class UnsubscribeResult(BaseModel):
    email: str | None
    outcome: signup.Leave


class Erasure(BaseModel):
    found: bool
    suppressed: bool


class Stats(BaseModel):
    subscribers: dict[str, int]
    paused: int
    suppressed_hashes: int
    editions: dict[str, int]


class EditionOut(BaseModel):
    edition_date: date
    status: IssueStatus
    subject: str
    built_at: datetime
    sending_at: datetime | None
    sent_at: datetime | None
    deliveries: dict[str, int]
    web_url: str

    @classmethod
    def of(cls, edition: EditionSummary, *, web_url: str) -> EditionOut:
        return cls(
            edition_date=edition.edition_date,
            status=edition.status,
            subject=edition.subject,
            built_at=edition.built_at,
            sending_at=edition.sending_at,
            sent_at=edition.sent_at,
            deliveries={status.value: count for status, count in edition.deliveries.items()},
            web_url=web_url,
        )


class SendResult(BaseModel):
    edition_date: date
    accepted: bool = Field(description="True when the send runs in the background (202).")
    dry_run: bool = False
    already_sent: bool = False
    to_enqueue: int | None = None
    confirmed: int | None = None
    enqueued: int | None = None
    sent: int | None = None
    retried: int | None = None
    failed: int | None = None
    finished: bool | None = None
    variants: int | None = Field(default=None, description="Content variants (dry runs).")


class TestSend(BaseModel):
    to: list[str] = Field(min_length=1, max_length=20, description="Addresses for test copies.")


class TestSendResult(BaseModel):
    address: str
    accepted: bool
    detail: str


class Control(BaseModel):
    edition_date: date
    changed: bool = Field(description="False when the edition already was in that state.")
    dropped: int | None = Field(default=None, description="Queued deliveries dropped (cancel).")


class EditionStatsOut(BaseModel):
    edition_date: date
    status: str
    subject: str
    deliveries: dict[str, int]
    bounced: int
    complaints: int
    unsubscribes: int
    sent_at: datetime | None


class VerdictOut(BaseModel):
    """Why a candidate story was taken into the edition or left out."""

    feed: str = Field(description="The feed the story came from.")
    title: str
    published_at: datetime
    taken: bool
    reason: str = Field(description="The same words as 'newsletter issue build --explain'.")

    @classmethod
    def of(cls, verdict: Verdict) -> VerdictOut:
        return cls(
            feed=verdict.source,
            title=verdict.title,
            published_at=verdict.published_at,
            taken=verdict.taken,
            reason=verdict.reason,
        )


class BuildOut(BaseModel):
    issue_id: int
    edition_date: date
    subject: str
    stories: int
    stories_dropped: int = Field(
        description="Stories left out to keep the mail under Gmail's 102 KB clip limit."
    )
    coins: int
    market_stale: bool = Field(description="The prices are older than the freshness limit.")
    rebuilt: bool = Field(description="True when an edition of that date existed already.")
    verdicts: list[VerdictOut] | None = Field(
        default=None,
        description="With explain: every candidate story and why it was taken or left.",
    )

    @classmethod
    def of(cls, result: BuildResult, *, explain: bool) -> BuildOut:
        return cls(
            issue_id=result.issue_id,
            edition_date=result.edition_date,
            subject=result.subject,
            stories=result.stories,
            stories_dropped=result.stories_dropped,
            coins=result.coins,
            market_stale=result.market_stale,
            rebuilt=result.rebuilt,
            verdicts=[VerdictOut.of(verdict) for verdict in result.verdicts] if explain else None,
        )


class RelayOut(BaseModel):
    """What one SMTP relay did with the messages handed to it, all editions together."""

    relay: str = Field(description="The relay's name (host:port unless named in [[relays]]).")
    sent: int
    deferred: int
    failed: int
    skipped: int


class WebhookRecipient(BaseModel):
    recipient: str
    kind: str = Field(description="hard, soft or complaint.")
    outcome: str = Field(
        description=(
            "suppressed; counted (a soft bounce, or an address already suppressed); ignored (no "
            "subscriber has the address); already-processed (the event came before)."
        )
    )


class WebhookReceipt(BaseModel):
    provider: str = Field(description="ses, postmark, mailgun or message (a raw report).")
    event_id: str = Field(description="The event's name; a redelivery carries the same.")
    result: str = Field(
        description=(
            "processed, already-processed, ignored, subscription-confirmed or subscription-pending."
        )
    )
    recipients: list[WebhookRecipient]
    note: str | None = None
