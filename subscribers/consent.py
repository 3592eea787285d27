"""The consent history: every consent given or withdrawn, appended and never changed.

The subscriber row keeps the consent in force (``consent_*`` columns); this history keeps them all,
so that an overwritten row never loses the record of an earlier one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, exists, insert, select
from sqlalchemy.orm import Session

from subscribers.model import WITHDRAWN, ConsentEvent, ConsentKind


def clip(value: str | None, length: int) -> str | None:
    """A printable, bounded value for a consent field (None when nothing is left)."""
    if value is None:
        return None
    cleaned = "".join(char for char in value if char.isprintable())
    return cleaned[:length] or None


_APPEND = insert(cast(Table, ConsentEvent.__table__))


def append(
    session: Session,
    subscriber_id: int,
    kind: ConsentKind,
    *,
    at: datetime,
    source: str | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
    wording: str | None = None,
) -> None:
    # One prebuilt Core statement, parameters bound: building an ORM insert per event cost more
    # than the insert itself.
    session.execute(
        _APPEND,
        {
            "subscriber_id": subscriber_id,
            "kind": kind.value,
            "at": at,
            "source": clip(source, 200),
            "ip": clip(ip, 45),
            "user_agent": clip(user_agent, 500),
            "wording": clip(wording, 40),
        },
    )


@dataclass(frozen=True, slots=True)
class Imported:
    """The consent of one imported subscriber, as the file gives it."""

    subscriber_id: int
    at: datetime
    source: str | None
    ip: str | None


def append_imports(session: Session, events: Iterable[Imported]) -> None:
    """One ``imported`` event per subscriber, each with its own time and source, in one statement."""
    rows = [
        {
            "subscriber_id": event.subscriber_id,
            "kind": ConsentKind.IMPORTED.value,
            "at": event.at,
            "source": clip(event.source, 200),
            "ip": clip(event.ip, 45),
            "user_agent": None,
            "wording": None,
        }
        for event in events
    ]
    if rows:
        session.execute(insert(ConsentEvent), rows)


def history(session: Session, subscriber_id: int) -> list[ConsentEvent]:
    return list(
        session.scalars(
            select(ConsentEvent)
            .where(ConsentEvent.subscriber_id == subscriber_id)
            .order_by(ConsentEvent.id)
        )
    )


def ever_withdrawn(session: Session, subscriber_id: int) -> bool:
    """Whether this subscriber ever withdrew consent (unsubscribed), even if they came back since."""
    return bool(
        session.scalar(
            select(
                exists().where(
                    ConsentEvent.subscriber_id == subscriber_id,
                    ConsentEvent.kind.in_([kind.value for kind in WITHDRAWN]),
                )
            )
        )
    )
