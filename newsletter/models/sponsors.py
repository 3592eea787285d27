"""Sponsor placements of editions and the clicks on their links."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    Date,
    ForeignKey,
    Index,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

from kernel import Base, BigId, UTCDateTime, utcnow


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
