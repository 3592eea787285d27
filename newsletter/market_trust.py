"""What of a stored market snapshot an edition may print.

Stored rows pass the same rules as fresh responses (``sources.validation``), so rows kept from before a
rule existed cannot print nonsense either; and a price that jumped beyond the configured factor from
the previous reading of the coin is held until a second reading agrees with it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from newsletter.models import MarketSnapshot
from newsletter.sources import validation

#: How far back a previous reading counts for the jump check.
PREVIOUS_WITHIN = timedelta(days=2)


@dataclass(frozen=True, slots=True)
class TrustedQuote:
    price: float | None
    change_24h: float | None
    change_7d: float | None
    sparkline: tuple[float, ...]


def trusted(
    snapshot: MarketSnapshot, *, previous_price: float | None = None, jump_factor: float | None
) -> TrustedQuote:
    """The values of ``snapshot`` that pass their rules; a held price holds its changes too."""
    price = validation.check("price", snapshot.price).value
    if (
        price is not None
        and jump_factor is not None
        and not validation.plausible_jump(price, previous_price, factor=jump_factor)
    ):
        validation.REJECTIONS.record(
            "coins",
            "price",
            f"held for a second reading: {price:.6g} after {previous_price:.6g} "
            f"(beyond a factor of {jump_factor:g})",
            source="stored market data",
            what=snapshot.coin_id,
        )
        return TrustedQuote(None, None, None, ())
    points = tuple(
        point
        for point in (
            validation.check("sparkline", value).value for value in snapshot.sparkline_7d or ()
        )
        if point is not None
    )
    return TrustedQuote(
        price=price,
        change_24h=validation.check("change_24h", snapshot.change_24h).value,
        change_7d=validation.check("change_7d", snapshot.change_7d).value,
        sparkline=points,
    )


def checked(field: str, value: float | None) -> float | None:
    return validation.check(field, value).value


def previous_prices(
    session: Session, coin_ids: Iterable[str], *, before: datetime, vs_currency: str
) -> dict[str, float]:
    """Each coin's price at its newest fetch before ``before`` (within ``PREVIOUS_WITHIN``)."""
    ids = sorted(set(coin_ids))
    if not ids:
        return {}
    newest = (
        select(MarketSnapshot.coin_id, func.max(MarketSnapshot.fetched_at).label("at"))
        .where(
            MarketSnapshot.coin_id.in_(ids),
            MarketSnapshot.vs_currency == vs_currency,
            MarketSnapshot.fetched_at < before,
            MarketSnapshot.fetched_at >= before - PREVIOUS_WITHIN,
        )
        .group_by(MarketSnapshot.coin_id)
        .subquery()
    )
    rows = session.execute(
        select(MarketSnapshot.coin_id, MarketSnapshot.price).join(
            newest,
            and_(
                MarketSnapshot.coin_id == newest.c.coin_id,
                MarketSnapshot.fetched_at == newest.c.at,
            ),
        )
    )
    return {row.coin_id: row.price for row in rows}


def trusted_as_of(stamps: Iterable[datetime | None], *, fetched_at: datetime) -> datetime:
    """When the prices are from: the newest source time not after the fetch, else the fetch time."""
    usable = [
        stamp
        for stamp in stamps
        if stamp is not None and validation.not_future(stamp, fetched_at=fetched_at) == stamp
    ]
    return max(usable) if usable else fetched_at
