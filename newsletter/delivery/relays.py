"""Several SMTP relays with failover, and what each relay did with the messages it was handed.

:class:`FailoverTransport` holds one transport per relay (each an SMTP pool) in priority order. A
message goes to the first relay that is not cooling down. A relay that cannot be reached (connection
refused, timeout, dropped connection: the transport's retry without a reply code, or a
:class:`TransportError`) or that answers ``421`` is passed over for ``cooldown`` seconds and the same
message goes on at once through the next relay; those answers mean the relay did not take the
message. Any other answer is final for that message: a ``5xx`` or a ``450`` is about the recipient,
not the relay, and another relay would say the same.

When every relay is cooling down they are all tried again in priority order, so one relay behaves
exactly as a lone SMTP transport did. When every relay fails for a message, it is retried later like
any temporary failure; when none could even be reached, the last :class:`TransportError` is raised
so that the sender stops and gives back its claims.

The counts (sent, deferred, failed, skipped per relay) are kept in memory and added to
``relay_counts`` by one upsert, from a timer thread, at most every ``flush_seconds``, and at
``close``: never a query a message, and no sending thread waits for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from kernel import utcnow
from newsletter.db import Database
from newsletter.delivery.transports import Envelope, Outcome, SendResult, Transport
from newsletter.errors import NewsletterError, TransportError
from newsletter.models import RelayCount

log = logging.getLogger(__name__)

#: What a relay did with a message, as counted.
SENT, DEFERRED, FAILED, SKIPPED = "sent", "deferred", "failed", "skipped"
_KINDS = {Outcome.SENT: SENT, Outcome.FAILED: FAILED}
KINDS = (SENT, DEFERRED, FAILED, SKIPPED)


@dataclass(frozen=True, slots=True)
class Relay:
    """One relay: its name in the counts (``host:port``), its priority, and its transport."""

    name: str
    priority: int
    transport: Transport


def _passes_over(result: SendResult) -> bool:
    """Whether the relay did not take the message at all: unreachable, dropped, or 421."""
    return result.outcome is Outcome.RETRY and (result.code is None or result.code == 421)


@dataclass
class RelayTally:
    """Counts per relay since the last flush; thread-safe."""

    _counts: dict[str, dict[str, int]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, relay: str, kind: str, amount: int = 1) -> None:
        with self._lock:
            counts = self._counts.setdefault(relay, dict.fromkeys(KINDS, 0))
            counts[kind] += amount

    def take(self) -> dict[str, dict[str, int]]:
        with self._lock:
            taken, self._counts = self._counts, {}
        return taken

    def give_back(self, counts: dict[str, dict[str, int]]) -> None:
        for relay, kinds in counts.items():
            for kind, amount in kinds.items():
                if amount:
                    self.add(relay, kind, amount)


def add_relay_counts(session: Session, counts: dict[str, dict[str, int]], *, now: datetime) -> None:
    """Add ``counts`` to ``relay_counts``: one upsert, rows in name order (no deadlock between
    workers on PostgreSQL)."""
    rows = [
        {"relay": relay, "updated_at": now, **{kind: kinds.get(kind, 0) for kind in KINDS}}
        for relay, kinds in sorted(counts.items())
    ]
    if not rows:
        return
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(RelayCount).values(rows)
    table = RelayCount.__table__
    statement = statement.on_conflict_do_update(
        index_elements=["relay"],
        set_={
            **{kind: table.c[kind] + statement.excluded[kind] for kind in KINDS},
            "updated_at": statement.excluded.updated_at,
        },
    )
    session.execute(statement)


def relay_counts(session: Session) -> dict[str, dict[str, int]]:
    """Every relay's counts so far, by name."""
    return {
        row.relay: {kind: getattr(row, kind) for kind in KINDS}
        for row in session.scalars(select(RelayCount).order_by(RelayCount.relay))
    }


class FailoverTransport:
    """Sends each message through the first relay, by priority, that takes it."""

    def __init__(
        self,
        relays: Sequence[Relay],
        *,
        cooldown: float,
        database: Database | None = None,
        flush_seconds: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not relays:
            raise ValueError("no relay")
        # sorted() is stable: relays of equal priority keep the order they were given in.
        self.relays = tuple(sorted(relays, key=lambda relay: relay.priority))
        self.cooldown = cooldown
        self.database = database
        self.flush_seconds = flush_seconds
        self.concurrency = max(relay.transport.concurrency for relay in self.relays)
        self.tally = RelayTally()
        self._monotonic = monotonic
        self._cooling: dict[str, float] = {}
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._timer: threading.Timer | None = None
        self._closed = False

    def _order(self, now: float) -> list[Relay]:
        if not self._cooling:  # no relay was ever passed over: all of them, by priority
            return list(self.relays)
        with self._lock:
            ready = [r for r in self.relays if self._cooling.get(r.name, 0.0) <= now]
        return ready or list(self.relays)

    def cooling(self) -> list[str]:
        """The relays passed over now (for tests and the log)."""
        now = self._monotonic()
        with self._lock:
            return [name for name, until in self._cooling.items() if until > now]

    def _pass_over(self, relay: Relay, reason: str) -> None:
        until = self._monotonic() + self.cooldown
        with self._lock:
            already = self._cooling.get(relay.name, 0.0) > self._monotonic()
            self._cooling[relay.name] = until
        if not already and len(self.relays) > 1:
            log.warning(
                "relay %s passed over for %g s: %s", relay.name, self.cooldown, reason[:300]
            )

    def send(self, envelope: Envelope, message: bytes) -> SendResult:
        order = self._order(self._monotonic())
        if len(order) < len(self.relays):
            for relay in self.relays:
                if all(relay is not ready for ready in order):
                    self.tally.add(relay.name, SKIPPED)
        last: SendResult | None = None
        error: TransportError | None = None
        for relay in order:
            try:
                result = relay.transport.send(envelope, message)
            except TransportError as exc:
                error = exc
                self._pass_over(relay, str(exc))
                self.tally.add(relay.name, SKIPPED)
                continue
            if _passes_over(result):
                last = result
                self._pass_over(relay, result.detail)
                # the last relay's refusal is the message's outcome: retried later, as with one relay
                self.tally.add(relay.name, DEFERRED if relay is order[-1] else SKIPPED)
                continue
            kind = _KINDS.get(result.outcome, DEFERRED)
            self.tally.add(relay.name, kind)
            self._maybe_flush()
            return result
        self._maybe_flush()
        if last is None and error is not None:
            raise error
        assert last is not None
        return last

    def _maybe_flush(self) -> None:
        """Write the counts ``flush_seconds`` after the first one not yet written, from a timer
        thread: the sending threads never wait for it, and an idle worker's counts still land."""
        if self.database is None:
            return
        with self._lock:
            if self._timer is not None or self._closed:
                return
            self._timer = threading.Timer(self.flush_seconds, self._timed_flush)
            self._timer.daemon = True
            self._timer.start()

    def _timed_flush(self) -> None:
        with self._lock:
            self._timer = None
        with self._flushing:
            self.flush()

    def flush(self) -> None:
        """Write the counts gathered since the last flush; on a database error keep them."""
        if self.database is None:
            return
        counts = self.tally.take()
        if not counts:
            return
        try:
            with self.database.transaction() as session:
                add_relay_counts(session, counts, now=utcnow())
        except NewsletterError as exc:
            log.warning("relay counts not written yet: %s", exc)
            self.tally.give_back(counts)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        try:
            with self._flushing:
                self.flush()
        finally:
            for relay in self.relays:
                relay.transport.close()
