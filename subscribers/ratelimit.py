"""Rate limits kept in the database, so that every worker process and host counts together.

Fixed windows: a hit increments the row of ``(scope, who, window)`` with one
``INSERT … ON CONFLICT DO UPDATE … RETURNING`` and compares the count with the limit. Identities are
stored hashed (an IP address or an email address never lands in this table in clear). Rows of past
windows are purged in batches when a new window of a busy limit starts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from subscribers.model import RateLimitBucket


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``count`` hits per ``window`` for one identity in ``scope``."""

    scope: str
    count: int
    window: timedelta


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    hits: int
    limit: int
    retry_after: int  # seconds until the window ends

    def __bool__(self) -> bool:
        return self.allowed


def _identity(who: str) -> str:
    return hashlib.sha256(who.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def hit(
    session: Session, limit: Limit, who: str, *, now: datetime, purge_expired: bool = False
) -> Decision:
    """Count one hit of ``who`` against ``limit``; the hit counts even when it is refused.

    With ``purge_expired``, the first hit of a new window also deletes ended windows (pass it for
    one limit that new windows start often enough for, such as the per-IP one).
    """
    seconds = max(int(limit.window.total_seconds()), 1)
    epoch = int(now.timestamp())
    window = epoch // seconds
    ends = datetime.fromtimestamp((window + 1) * seconds, tz=UTC)
    key = f"{limit.scope}:{_identity(who)}:{window}"
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(RateLimitBucket).values(key=key, hits=1, expires_at=ends)
    statement = statement.on_conflict_do_update(
        index_elements=["key"], set_={"hits": RateLimitBucket.hits + 1}
    )
    hits = session.execute(statement.returning(RateLimitBucket.hits)).scalar_one()
    if hits == 1 and purge_expired:
        purge(session, now=now)
    return Decision(
        allowed=hits <= limit.count,
        hits=hits,
        limit=limit.count,
        retry_after=max(int((ends - now).total_seconds()), 1),
    )


def purge(session: Session, *, now: datetime, batch: int = 1000) -> int:
    """Delete rows of windows that have ended (a batch; rows another process holds are skipped)."""
    expired = (
        select(RateLimitBucket.key)
        .where(RateLimitBucket.expires_at < now)
        .limit(batch)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    result = session.execute(
        delete(RateLimitBucket)
        .where(RateLimitBucket.key.in_(expired))
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
