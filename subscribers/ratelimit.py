"""Rate limits kept in the database, so that every worker process and host counts together.

The signup policy lives here too (:func:`check_signup`, :func:`allow_subscription_mail`): who is
counted as one client (an IPv4 address, an IPv6 /64) and as one mailbox (plus-tag and dot variants at
the providers that ignore them, see :func:`subscribers.addresses.mailbox_key`).

Fixed windows: a hit increments the row of ``(scope, who, window)`` with one
``INSERT … ON CONFLICT DO UPDATE … RETURNING`` and compares the count with the limit. Identities are
stored hashed (an IP address or an email address never lands in this table in clear). Rows of past
windows are purged in batches when a new window of a busy limit starts.

Hand-written on purpose, not an in-memory limiter library (``limits``, ``slowapi`` and the like keep
their counters in the process, or need Redis or memcached): the web may run as several processes on
several hosts behind a proxy, and a limit that each process counts alone, or that a restart resets,
is a limit a bot gets around by retrying. The database is already shared by all of them and survives
restarts, so the counters live there, in one statement a hit.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import cast

from sqlalchemy import Executable, Table, bindparam, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from subscribers.addresses import mailbox_key
from subscribers.model import RateLimitBucket

SIGNUP_WINDOW = timedelta(hours=1)
MAIL_WINDOW = timedelta(days=1)
IPV6_CLIENT_PREFIX = 64  # one site, one customer line: providers hand out a /64 or more


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


_UPSERTS: dict[str, Executable] = {}


def _upsert(dialect: str) -> Executable:
    """The counting statement of a dialect, built once: a hit only binds its key and window end."""
    statement = _UPSERTS.get(dialect)
    if statement is None:
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        # On the Core table: an ORM-enabled insert goes through the bulk-persistence path and
        # coerces its values again at every execution, which cost more than the statement.
        table = cast(Table, RateLimitBucket.__table__)
        statement = _UPSERTS[dialect] = (
            insert(table)
            .values(
                key=bindparam("b_key"),
                hits=1,
                expires_at=bindparam("b_ends", type_=table.c.expires_at.type),
            )
            .on_conflict_do_update(index_elements=["key"], set_={"hits": table.c.hits + 1})
            .returning(table.c.hits)
        )
    return statement


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
    statement = _upsert(session.get_bind().dialect.name)
    hits = session.execute(statement, {"b_key": key, "b_ends": ends}).scalar_one()
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


def client_key(ip: str) -> str:
    """The identity one client is limited as: its IPv4 address, or the /64 of its IPv6 address.

    An IPv6 host picks any of the 2**64 addresses of its network at will (privacy extensions), so
    counting per address would not limit it at all. An IPv4-mapped IPv6 address counts as its IPv4
    address. Anything that is not an IP address is counted as given.
    """
    try:
        address = ipaddress.ip_address(ip.strip().strip("[]"))
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False))
    return str(address)


@dataclass(frozen=True, slots=True)
class SignupPolicy:
    """Subscribe requests per client and per mailbox an hour; subscription mails per mailbox a day."""

    per_client: int
    per_mailbox: int
    mails_per_day: int


@dataclass(frozen=True, slots=True)
class Refusal:
    scope: str  # "subscribe-ip" or "subscribe-address"
    decision: Decision


def check_signup(
    session: Session, policy: SignupPolicy, *, ip: str, address_key: str, now: datetime
) -> Refusal | None:
    """Count one subscribe request of ``ip`` for ``address_key``; the refusal, or None to go on.

    The client is counted first; a request it refuses is not counted against the mailbox, so that
    a flood from one client cannot lock a stranger's address out.
    """
    for scope, count, who, purge_expired in (
        ("subscribe-ip", policy.per_client, client_key(ip), True),
        ("subscribe-address", policy.per_mailbox, mailbox_key(address_key), False),
    ):
        limit = Limit(scope, count, SIGNUP_WINDOW)
        decision = hit(session, limit, who, now=now, purge_expired=purge_expired)
        if not decision:
            return Refusal(scope, decision)
    return None


def allow_subscription_mail(
    session: Session, policy: SignupPolicy, *, address_key: str, now: datetime
) -> bool:
    """Count one subscription mail (confirm, already subscribed) to the mailbox; False: over the cap."""
    cap = Limit("subscription-mail", policy.mails_per_day, MAIL_WINDOW)
    return bool(hit(session, cap, mailbox_key(address_key), now=now))
