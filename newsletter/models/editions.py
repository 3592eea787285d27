"""Articles, market data and editions (issues) with their variants, and the sources' state."""

from __future__ import annotations

import enum
from datetime import date, datetime

from sqlalchemy import (
    JSON,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from kernel import Base, BigId, UTCDateTime, status_enum, utcnow


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
