"""Tables of the pipeline: articles, market snapshots, issues (editions) and the deliveries ledger.

The subscribers table lives in :mod:`subscribers.model`; both share one metadata, so one Alembic
history covers them.
"""

from __future__ import annotations

import enum
from datetime import date, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from kernel import Base, BigId, UTCDateTime, status_enum, utcnow
from subscribers.model import Subscriber


class Article(Base):
    """A news story seen in a feed. Unique per (source, GUID) and per canonical URL."""

    __tablename__ = "articles"
    __table_args__ = (
        UniqueConstraint("source", "guid"),
        Index("ix_articles_published_at", "published_at"),
        Index("ix_articles_title_key", "title_key"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source: Mapped[str] = mapped_column(String(100))
    guid: Mapped[str] = mapped_column(String(1000))
    url: Mapped[str] = mapped_column(String(2000), unique=True)
    title: Mapped[str] = mapped_column(String(500))
    #: The title folded for duplicate detection across sources.
    title_key: Mapped[str] = mapped_column(String(500))
    summary: Mapped[str] = mapped_column(Text, default="")
    author: Mapped[str | None] = mapped_column(String(200))
    image_url: Mapped[str | None] = mapped_column(String(2000))
    published_at: Mapped[datetime] = mapped_column(UTCDateTime)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MarketSnapshot(Base):
    """One coin's market data as fetched at one moment."""

    __tablename__ = "market_snapshots"
    __table_args__ = (Index("ix_market_snapshots_coin_fetched", "coin_id", "fetched_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    coin_id: Mapped[str] = mapped_column(String(100))
    symbol: Mapped[str] = mapped_column(String(30))
    name: Mapped[str] = mapped_column(String(100))
    vs_currency: Mapped[str] = mapped_column(String(10))
    price: Mapped[float] = mapped_column(Float)
    market_cap: Mapped[float | None] = mapped_column(Float)
    market_cap_rank: Mapped[int | None] = mapped_column(Integer)
    change_24h: Mapped[float | None] = mapped_column(Float)
    change_7d: Mapped[float | None] = mapped_column(Float)
    sparkline_7d: Mapped[list[float] | None] = mapped_column(JSON)
    image_url: Mapped[str | None] = mapped_column(String(500))
    #: When the data provider last updated this price.
    source_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class IssueStatus(enum.StrEnum):
    """Where an edition is; its moves are in :mod:`newsletter.edition_states`."""

    DRAFT = "draft"
    SENDING = "sending"
    SENT = "sent"
    CANCELLED = "cancelled"


#: Editions whose content may still be rebuilt.
REBUILDABLE = frozenset({IssueStatus.DRAFT})


class Issue(Base):
    """One edition per date."""

    __tablename__ = "issues"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    edition_date: Mapped[date] = mapped_column(Date, unique=True)
    status: Mapped[IssueStatus] = mapped_column(
        status_enum(IssueStatus, "issue_status"), default=IssueStatus.DRAFT
    )
    subject: Mapped[str] = mapped_column(String(300))
    preheader: Mapped[str] = mapped_column(String(300), default="")
    #: fetched_at of the market snapshot the edition shows, None when no market data was available.
    market_fetched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    built_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sending_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Set while an operator holds the edition: workers send none of it until it is resumed.
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: When ``newsletter deliveries prune`` removed its ledger rows: who received it is no longer
    #: known, so no follow-up send may queue it again.
    ledger_pruned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The sponsor placement the edition carries (None: none, or a ``[[sponsors]]`` slot of the TOML).
    sponsor_placement_id: Mapped[int | None] = mapped_column(
        ForeignKey("sponsor_placements.id"), index=True
    )

    variants: Mapped[list[IssueVariant]] = relationship(
        back_populates="issue", cascade="all, delete-orphan", order_by="IssueVariant.id"
    )
    articles: Mapped[list[IssueArticle]] = relationship(
        back_populates="issue", cascade="all, delete-orphan", order_by="IssueArticle.position"
    )


class IssueArticle(Base):
    """A story chosen for an edition. An article appears in at most one edition."""

    __tablename__ = "issue_articles"

    issue_id: Mapped[int] = mapped_column(
        ForeignKey("issues.id", ondelete="CASCADE"), primary_key=True
    )
    article_id: Mapped[int] = mapped_column(
        ForeignKey("articles.id"), primary_key=True, unique=True
    )
    position: Mapped[int] = mapped_column(Integer)

    issue: Mapped[Issue] = relationship(back_populates="articles")
    article: Mapped[Article] = relationship()


class IssueVariant(Base):
    """The final inlined HTML and the text of one variant of an edition, with personal tokens.

    The tokens (see ``newsletter.delivery.message``) are replaced per recipient at send time, so what a
    subscriber received can be shown again byte for byte.
    """

    __tablename__ = "issue_variants"
    __table_args__ = (UniqueConstraint("issue_id", "key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    issue_id: Mapped[int] = mapped_column(ForeignKey("issues.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(200))
    #: The variant's own subject (a watchlist leads with its first coin); None: the edition's.
    subject: Mapped[str | None] = mapped_column(String(300))
    html: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    issue: Mapped[Issue] = relationship(back_populates="variants")


class DeliveryStatus(enum.StrEnum):
    """Where a delivery is; its moves are in :mod:`newsletter.delivery.states`."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    SUPPRESSED = "suppressed"


class Delivery(Base):
    """The ledger: one row per (edition, subscriber). Queue, audit trail and exactly-once guard."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("issue_id", "subscriber_id"),
        Index("ix_deliveries_issue_status", "issue_id", "status"),
        Index(
            "ix_deliveries_queued",
            "issue_id",
            "not_before",
            "id",
            sqlite_where=text("status = 'queued'"),
            postgresql_where=text("status = 'queued'"),
        ),
        # Claims take the lowest ids first: this keeps a claim a short index walk however many
        # rows of the edition were already sent.
        Index(
            "ix_deliveries_queued_id",
            "issue_id",
            "id",
            sqlite_where=text("status = 'queued'"),
            postgresql_where=text("status = 'queued'"),
        ),
        # The send rate of the last minutes (metrics) reads a short range, not the whole ledger.
        Index("ix_deliveries_sent_at", "sent_at"),
        # Delivery ids appear in bounce reports: never reuse one (SQLite would, without this).
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    issue_id: Mapped[int] = mapped_column(ForeignKey("issues.id"))
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id"), index=True)
    status: Mapped[DeliveryStatus] = mapped_column(
        status_enum(DeliveryStatus, "delivery_status"), default=DeliveryStatus.QUEUED
    )
    not_before: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    variant_key: Mapped[str | None] = mapped_column(String(200))
    message_id: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    subscriber: Mapped[Subscriber] = relationship()


class SourceState(Base):
    """What we remember about a source between fetches: validators for conditional GET, last outcome."""

    __tablename__ = "source_states"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    etag: Mapped[str | None] = mapped_column(String(500))
    last_modified: Mapped[str | None] = mapped_column(String(100))
    last_fetched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    failures: Mapped[int] = mapped_column(Integer, default=0)


class MarketGlobal(Base):
    """The whole market at one moment (CoinGecko ``/global``)."""

    __tablename__ = "market_globals"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    vs_currency: Mapped[str] = mapped_column(String(10))
    total_market_cap: Mapped[float | None] = mapped_column(Float)
    total_volume: Mapped[float | None] = mapped_column(Float)
    market_cap_change_24h: Mapped[float | None] = mapped_column(Float)
    btc_dominance: Mapped[float | None] = mapped_column(Float)
    eth_dominance: Mapped[float | None] = mapped_column(Float)
    source_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class SentimentReading(Base):
    """One Fear & Greed index value (alternative.me ``/fng/``)."""

    __tablename__ = "sentiment_readings"
    __table_args__ = (UniqueConstraint("measured_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    value: Mapped[int] = mapped_column(Integer)
    label: Mapped[str] = mapped_column(String(40))
    measured_at: Mapped[datetime] = mapped_column(UTCDateTime)
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RouteRate(Base):
    """A sending route's token bucket (a relay, or a recipient domain), shared by every worker.

    ``tokens`` refill at ``per_minute``; while ``slowed_until`` is in the future (after a 421 or
    451 from that route) they refill at half that rate.
    """

    __tablename__ = "route_rates"

    route: Mapped[str] = mapped_column(String(300), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    slowed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    slow_reason: Mapped[str | None] = mapped_column(Text)


class RelayCount(Base):
    """What each SMTP relay did with the messages handed to it, all editions and workers together.

    Sending processes add their counts every few seconds and when they stop (one upsert a flush,
    never a query a message), so a crash forgets at most those seconds' counts; the ledger, not
    this table, says what was delivered.
    """

    __tablename__ = "relay_counts"

    relay: Mapped[str] = mapped_column(String(300), primary_key=True)
    sent: Mapped[int] = mapped_column(BigId, server_default=text("0"))
    deferred: Mapped[int] = mapped_column(BigId, server_default=text("0"))
    failed: Mapped[int] = mapped_column(BigId, server_default=text("0"))
    skipped: Mapped[int] = mapped_column(BigId, server_default=text("0"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class BounceKind(enum.StrEnum):
    HARD = "hard"
    SOFT = "soft"
    COMPLAINT = "complaint"


class Bounce(Base):
    """A bounce or complaint report about one recipient: the audit trail behind suppression."""

    __tablename__ = "bounces"
    __table_args__ = (UniqueConstraint("report_id", "recipient"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    #: Message-ID of the report (a DSN or a feedback report), so a report counts once.
    report_id: Mapped[str] = mapped_column(String(300))
    recipient: Mapped[str] = mapped_column(String(320))
    kind: Mapped[BounceKind] = mapped_column(status_enum(BounceKind, "bounce_kind"))
    status: Mapped[str | None] = mapped_column(String(20))
    diagnostic: Mapped[str | None] = mapped_column(Text)
    subscriber_id: Mapped[int | None] = mapped_column(ForeignKey("subscribers.id"), index=True)
    delivery_id: Mapped[int | None] = mapped_column(ForeignKey("deliveries.id"))
    source: Mapped[str] = mapped_column(String(100))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)


class DeliveryCount(Base):
    """How many deliveries each edition has in each status, kept by database triggers (0008).

    Every insert, update and delete of ``deliveries`` adds its difference here in the same
    transaction, whichever code path writes, so a metrics scrape sums a few rows instead of counting
    the ledger. ``shard`` is the writing PostgreSQL backend (0 on SQLite): concurrent transactions
    never update the same row, so the counts add no lock waits and no deadlocks between workers.
    """

    __tablename__ = "delivery_counts"

    issue_id: Mapped[int] = mapped_column(BigId, primary_key=True)
    status: Mapped[str] = mapped_column(String(20), primary_key=True)
    shard: Mapped[int] = mapped_column(Integer, primary_key=True)
    count: Mapped[int] = mapped_column(BigId)


class WebhookEndpoint(Base):
    """An operator's receiver of outgoing webhooks: where to post, which events, the signing secret.

    Disabled either by an operator (no event is queued for it meanwhile) or after a run of failed
    attempts (``auto_disabled``: its events keep being queued, and are delivered once it is enabled
    again, so that an outage loses nothing).
    """

    __tablename__ = "webhook_endpoints"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str] = mapped_column(String(200), default="")
    #: The event types it receives.
    events: Mapped[list[str]] = mapped_column(JSON)
    #: The Standard Webhooks signing secret, ``whsec_`` and base64 of random bytes.
    secret: Mapped[str] = mapped_column(String(100))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    #: Disabled after ``webhook_failure_limit`` failed attempts in a row, not by an operator.
    auto_disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    #: Failed attempts since the last success.
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    #: After a failure no message goes to this endpoint before then (backoff per receiver).
    retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"


class WebhookDelivery(Base):
    """One event for one endpoint: the queue of outgoing webhooks and their audit trail.

    Inserted in the transaction of the event itself; ``payload`` holds the exact JSON body that is
    signed and posted; ``message_id`` (the ``webhook-id`` header) is the same for every endpoint of
    one event and on every retry, so that a receiver can drop a message it has seen.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "message_id"),
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            "id",
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True
    )
    message_id: Mapped[str] = mapped_column(String(40))
    event_type: Mapped[str] = mapped_column(String(50))
    payload: Mapped[str] = mapped_column(Text)
    #: The subscriber the event is about, if any (no foreign key: the row may be deleted), so that
    #: erasing a subscriber can drop what the queue holds about them.
    subscriber_id: Mapped[int | None] = mapped_column(BigId, index=True)
    status: Mapped[WebhookStatus] = mapped_column(
        status_enum(WebhookStatus, "webhook_status"), default=WebhookStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The HTTP status of the last attempt (None: no answer).
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SponsorPlacement(Base):
    """A paid placement: the sponsored slot of every edition from ``start_date`` to ``end_date``.

    The ranges of two placements never overlap (an edition has one sponsored slot); the service
    that adds them checks it (:mod:`newsletter.sponsors`).
    """

    __tablename__ = "sponsor_placements"
    __table_args__ = (Index("ix_sponsor_placements_dates", "start_date", "end_date"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    url: Mapped[str] = mapped_column(String(2000))
    text: Mapped[str] = mapped_column(String(400))
    image_url: Mapped[str | None] = mapped_column(String(2000))
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SponsorClick(Base):
    """Clicks on a placement's link in one edition: a count, nothing about who clicked."""

    __tablename__ = "sponsor_clicks"

    placement_id: Mapped[int] = mapped_column(
        ForeignKey("sponsor_placements.id", ondelete="CASCADE"), primary_key=True
    )
    edition_date: Mapped[date] = mapped_column(Date, primary_key=True)
    clicks: Mapped[int] = mapped_column(BigId, default=0)


class OutboxStatus(enum.StrEnum):
    """Where a subscription mail is: ``queued`` (due at ``not_before``), ``sending`` (claimed
    under a lease), ``sent``, or ``failed`` (given up, with the reason in ``last_error``)."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


class OutboxMail(Base):
    """A subscription mail (confirm, already subscribed, welcome, goodbye), written in the same
    transaction as the subscriber change that made it due, and delivered from here.

    ``message`` holds the finished bytes until the mail is sent or given up; it is cleared then, so
    that the table keeps no personal link longer than the mail needs it.
    """

    __tablename__ = "outbox_mails"
    __table_args__ = (
        Index("ix_outbox_mails_status_not_before", "status", "not_before"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    subscriber_id: Mapped[int | None] = mapped_column(BigId, index=True)
    recipient: Mapped[str] = mapped_column(String(320))
    envelope_sender: Mapped[str] = mapped_column(String(320))
    message_id: Mapped[str] = mapped_column(String(300))
    message: Mapped[bytes | None] = mapped_column(LargeBinary)
    status: Mapped[OutboxStatus] = mapped_column(
        status_enum(OutboxStatus, "outbox_status"), default=OutboxStatus.QUEUED
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[datetime] = mapped_column(UTCDateTime)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
