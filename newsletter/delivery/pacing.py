"""Pacing: send rates per relay and per recipient domain, kept in the database.

Each limited route (``relay:HOST`` or a domain such as ``gmail.com``) is a token bucket in
``route_rates``. A worker reserves a few tokens at a time in one short transaction (the row is locked
on PostgreSQL; SQLite serialises writers), so every worker on every host, and a worker after a
restart, respect the same rate. A 421 or 451 from a route slows it: for ``slowdown`` it refills at
half its rate, and a route without a configured rate gets ``slowed_per_minute``.

A delivery that may not go now is not an attempt: it goes back to the queue, due when a token will
be there.

Hand-written on purpose, not an in-memory rate-limiter library: a receiving domain's limit holds for
the whole list, whichever worker on whichever host sends, and must hold across a restart (a worker
that restarts with a full in-memory bucket would burst into a provider that just answered 421).
The token buckets therefore live in the ledger's database, which every worker already shares.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from kernel import insert_ignoring_conflicts, utcnow
from newsletter.db import Database
from newsletter.models import RouteRate

Clock = Callable[[], datetime]


def relay_route(host: str) -> str:
    return f"relay:{host.lower()}"


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()


@dataclass
class _Reservation:
    tokens: int = 0
    wait: float = 0.0


@dataclass
class Pacer:
    """Decides, message by message, whether it may go now; reserves tokens in chunks."""

    database: Database
    relay: str
    relay_per_minute: float = 0.0
    domain_per_minute: Mapping[str, float] = field(default_factory=dict)
    slowed_per_minute: float = 60.0
    slowdown: timedelta = timedelta(minutes=10)
    chunk: int = 20
    clock: Clock = utcnow
    _reserved: dict[str, _Reservation] = field(default_factory=dict)
    _slowed: dict[str, datetime] = field(default_factory=dict)
    _slowed_checked: datetime | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def active(self) -> bool:
        return bool(self.relay_per_minute or self.domain_per_minute or self._slowed)

    def _rate(self, route: str, now: datetime) -> float:
        """Tokens per minute for ``route`` now; 0 means unlimited."""
        base = (
            self.relay_per_minute if route == self.relay else self.domain_per_minute.get(route, 0.0)
        )
        slowed = self._slowed.get(route)
        if slowed is not None and slowed > now:
            return base / 2 if base else self.slowed_per_minute
        return base

    def _refresh_slowed(self, now: datetime) -> None:
        if self._slowed_checked is not None and now - self._slowed_checked < timedelta(seconds=15):
            return
        with self.database.transaction(readonly=True) as session:
            rows = session.execute(
                select(RouteRate.route, RouteRate.slowed_until).where(RouteRate.slowed_until > now)
            ).all()
        self._slowed = {route: until for route, until in rows if until is not None}
        self._slowed_checked = now

    def delay(self, recipient: str) -> float:
        """0 when a message to ``recipient`` may go now; else seconds until it may."""
        now = self.clock()
        with self._lock:
            self._refresh_slowed(now)
            waits = [self._take(route, now) for route in (self.relay, domain_of(recipient))]
        return max(waits)

    def _take(self, route: str, now: datetime) -> float:
        rate = self._rate(route, now)
        if not rate:
            return 0.0
        reservation = self._reserved.setdefault(route, _Reservation())
        if reservation.tokens <= 0:
            granted, wait = self._reserve(route, rate, now)
            reservation.tokens, reservation.wait = granted, wait
        if reservation.tokens <= 0:
            return max(reservation.wait, 0.5)
        reservation.tokens -= 1
        return 0.0

    def _reserve(self, route: str, per_minute: float, now: datetime) -> tuple[int, float]:
        """Take up to ``chunk`` tokens from the shared bucket; return (granted, seconds to wait)."""
        per_second = per_minute / 60.0
        burst = max(1.0, per_minute / 12.0)  # five seconds' worth: bursts stay small
        with self.database.transaction() as session:
            bucket = self._bucket(session, route, burst=burst, now=now)
            elapsed = max((now - bucket.updated_at).total_seconds(), 0.0)
            tokens = min(burst, bucket.tokens + elapsed * per_second)
            granted = int(min(self.chunk, math.floor(tokens)))
            bucket.tokens = tokens - granted
            bucket.updated_at = now
        wait = 0.0 if granted else (1.0 - tokens) / per_second
        return granted, wait

    def _bucket(self, session: Session, route: str, *, burst: float, now: datetime) -> RouteRate:
        session.execute(
            insert_ignoring_conflicts(session, RouteRate, index_elements=["route"]).values(
                route=route, tokens=burst, updated_at=now
            )
        )
        return session.scalars(
            select(RouteRate).where(RouteRate.route == route).with_for_update()
        ).one()

    def slow_down(self, route: str, *, reason: str) -> None:
        """A 421 or 451 from ``route``: halve its rate (or limit it) for a while, for every worker."""
        now = self.clock()
        until = now + self.slowdown
        with self._lock:
            with self.database.transaction() as session:
                bucket = self._bucket(session, route, burst=0.0, now=now)
                bucket.slowed_until = until
                bucket.slow_reason = reason[:500]
            self._slowed[route] = until
            self._reserved.pop(route, None)
