"""Recording what became of claimed deliveries: sent, retried with backoff, failed, or deferred.

A sent row is written in one executemany per flush; every other outcome moves its row through the
delivery state machine (:mod:`newsletter.delivery.states`), guarded by this worker's lease.

:class:`Recorder` writes them from a thread of its own while the sender goes on sending, and keeps
what it could not write while the database was away (a restart, a failover) until it is back.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar, assert_never

from sqlalchemy import BigInteger, String, bindparam, func, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

from kernel.clock import Clock
from newsletter.db import Database
from newsletter.delivery.recipients import suppress_refused
from newsletter.delivery.states import may_become, move_rows
from newsletter.delivery.transports import Outcome
from newsletter.errors import DatabaseError
from newsletter.models import Delivery, DeliveryStatus

log = logging.getLogger(__name__)

RETRY_BASE = timedelta(minutes=2)
#: How long a sender waits for a database that went away (a restart) before it gives up.
RECONNECT_PATIENCE = timedelta(minutes=2)

T = TypeVar("T")
RETRY_CAP = timedelta(hours=2)


@dataclass(frozen=True, slots=True)
class Recorded:
    """The outcome of one claimed delivery, to write back."""

    delivery_id: int
    subscriber_id: int
    outcome: Outcome
    attempts: int
    message_id: str | None = None
    variant_key: str | None = None
    detail: str = ""
    suppress_recipient: bool = False
    queued_at: datetime | None = None
    code: int | None = None
    #: For a deferred one: seconds until the route has room again.
    defer_seconds: float = 0.0

    def __post_init__(self) -> None:
        # Its value ("sent", "retry", ...) is accepted too; anything else fails here, not later.
        object.__setattr__(self, "outcome", Outcome(self.outcome))


def backoff(attempts: int, *, rng: random.Random | None = None) -> timedelta:
    """Exponential backoff with jitter: up to 2 min × 2^(attempts-1), capped at 2 h."""
    return exponential_backoff(attempts, base=RETRY_BASE, cap=RETRY_CAP, rng=rng)


def exponential_backoff(
    attempts: int, *, base: timedelta, cap: timedelta, rng: random.Random | None = None
) -> timedelta:
    """The wait before try ``attempts + 1``: ``base`` × 2^(attempts-1), capped at ``cap``, of which
    a random half is taken off, so that retries of many rows spread out."""
    ceiling = min(base * (1 << min(max(attempts - 1, 0), 16)), cap)
    draw = rng.random() if rng is not None else random.random()
    return ceiling * (0.5 + 0.5 * draw)


_MARK_SENT = (
    update(Delivery)
    .where(Delivery.id == bindparam("b_id"), may_become(DeliveryStatus.SENT))
    .values(
        status=DeliveryStatus.SENT,
        sent_at=bindparam("b_now", type_=Delivery.sent_at.type),
        message_id=bindparam("b_message_id"),
        variant_key=bindparam("b_variant_key"),
        last_error=None,
        lease_owner=None,
        lease_until=None,
    )
)


_ROWS = (
    func.unnest(
        bindparam("b_ids", type_=ARRAY(BigInteger)),
        bindparam("b_message_ids", type_=ARRAY(String)),
        bindparam("b_variant_keys", type_=ARRAY(String)),
    )
    .table_valued("id", "message_id", "variant_key")
    .render_derived(name="marks")
)

#: PostgreSQL: one UPDATE … FROM unnest(arrays) for the whole flush, so that the statement-level
#: triggers keeping ``delivery_counts`` run once per flush, not once per row.
_MARK_SENT_ALL = (
    update(Delivery)
    .where(Delivery.id == _ROWS.c.id, may_become(DeliveryStatus.SENT))
    .values(
        status=DeliveryStatus.SENT,
        sent_at=bindparam("b_now", type_=Delivery.sent_at.type),
        message_id=_ROWS.c.message_id,
        variant_key=_ROWS.c.variant_key,
        last_error=None,
        lease_owner=None,
        lease_until=None,
    )
    .execution_options(synchronize_session=False)
)


def _mark_sent(session: Session, results: Sequence[Recorded], *, now: datetime) -> None:
    """One statement for a flush of accepted messages: a single UPDATE on PostgreSQL, an
    executemany elsewhere (SQLite's row triggers count each row anyway)."""
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.execute(
            _MARK_SENT_ALL,
            {
                "b_ids": [result.delivery_id for result in results],
                "b_message_ids": [result.message_id for result in results],
                "b_variant_keys": [result.variant_key for result in results],
                "b_now": now,
            },
        )
        return
    connection.execute(
        _MARK_SENT,
        [
            {
                "b_id": result.delivery_id,
                "b_now": now,
                "b_message_id": result.message_id,
                "b_variant_key": result.variant_key,
            }
            for result in results
        ],
    )


def record(
    session: Session,
    results: Sequence[Recorded],
    *,
    owner: str,
    now: datetime,
    max_attempts: int,
    max_age: timedelta = timedelta(hours=24),
) -> None:
    """Write outcomes back. A sent row is sent whatever happened to its lease meanwhile.

    A temporary failure is queued again with backoff until ``max_attempts`` tries or ``max_age``
    since it was queued, then it fails with the last reply kept. The sent rows (nearly all of them)
    are written with one executemany; the rest one by one, each only while this worker holds it.
    """
    sent = [result for result in results if result.outcome is Outcome.SENT]
    if sent:
        _mark_sent(session, sent, now=now)
    for result in results:
        step = _next_state(result, now=now, max_attempts=max_attempts, max_age=max_age)
        if step is None:
            continue  # sent: written above
        to, values = step
        move_rows(
            session,
            Delivery.id == result.delivery_id,
            Delivery.lease_owner == owner,
            to=to,
            lease_owner=None,
            lease_until=None,
            **values,
        )
        if result.suppress_recipient:
            suppress_refused(
                session,
                result.subscriber_id,
                reason=f"refused by the mail server: {result.detail}",
                now=now,
            )


def _next_state(
    result: Recorded, *, now: datetime, max_attempts: int, max_age: timedelta
) -> tuple[DeliveryStatus, dict[str, Any]] | None:
    """Where a row goes after its outcome, and what else it keeps; None for a sent one."""
    match result.outcome:
        case Outcome.DEFERRED:  # paced: not an attempt
            return DeliveryStatus.QUEUED, {
                "not_before": now + timedelta(seconds=result.defer_seconds),
                "attempts": Delivery.attempts - 1,
            }
        case Outcome.RETRY:
            too_old = result.queued_at is not None and now - result.queued_at >= max_age
            if result.attempts < max_attempts and not too_old:
                return DeliveryStatus.QUEUED, {
                    "not_before": now + backoff(result.attempts),
                    "last_error": result.detail[:2000],
                }
            reason = f"gave up after {result.attempts} attempts: {result.detail}"
            return DeliveryStatus.FAILED, {"last_error": reason[:2000]}
        case Outcome.FAILED:
            return DeliveryStatus.FAILED, {"last_error": result.detail[:2000]}
        case Outcome.SENT:
            return None  # written for the whole flush in one statement
        case _:
            assert_never(result.outcome)


def database_away(exc: BaseException) -> bool:
    """Whether an error says the database could not be reached or dropped the connection (a
    restart, a failover, a lock that timed out), rather than that the work itself was wrong."""
    if isinstance(exc, (OperationalError, InterfaceError)):
        return True
    return isinstance(exc, DatabaseError) and isinstance(
        exc.__cause__, (OperationalError, InterfaceError)
    )


def persist(
    work: Callable[[], T],
    *,
    patience: timedelta = RECONNECT_PATIENCE,
    what: str = "database work",
    sleep: Callable[[float], object] = time.sleep,
) -> T:
    """Run ``work`` (one whole transaction) again until the database answers, for up to
    ``patience``; an error of the work itself, or a database away for longer, is raised.

    ``work`` must be safe to run twice: a commit whose answer was lost may have taken effect.
    """
    deadline = time.monotonic() + patience.total_seconds()
    pause = 0.05
    while True:
        try:
            return work()
        except Exception as exc:
            if not database_away(exc) or time.monotonic() + pause > deadline:
                raise
            log.warning("%s: the database is away (%s); trying again in %.2f s", what, exc, pause)
            sleep(pause)
            pause = min(pause * 2, 2.0)


class Recorder:
    """Writes outcomes from a thread of its own, one chunk at a time, while the sender sends.

    At most one chunk is being written while the sender fills the next one; :meth:`add` waits for
    the chunk before to be written. So what the relay accepted and the ledger does not yet say is
    never more than two chunks (the sender uses chunks of half its flush size). A chunk that cannot
    be written because the database went away is kept, and written once it is back (up to
    ``patience``); a chunk that still cannot be written fails the sender.
    """

    def __init__(
        self,
        *,
        database: Database,
        owner: str,
        clock: Clock,
        max_attempts: int,
        max_age: timedelta,
        patience: timedelta = RECONNECT_PATIENCE,
    ) -> None:
        self.database = database
        self.owner = owner
        self.clock = clock
        self.max_attempts = max_attempts
        self.max_age = max_age
        self.patience = patience
        self._changed = threading.Condition()
        self._chunk: list[Recorded] | None = None
        self._failure: BaseException | None = None
        self._closing = False
        self._thread: threading.Thread | None = None

    def add(self, results: Sequence[Recorded]) -> None:
        """Hand over a chunk to write; first wait until the one before is written."""
        if not results:
            return
        with self._changed:
            self._wait_idle()
            self._chunk = list(results)
            self._changed.notify_all()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"recorder-{self.owner}", daemon=True
                )
                self._thread.start()

    def drain(self) -> None:
        """Wait until everything handed over is written; raise if it could not be."""
        with self._changed:
            self._wait_idle()

    def close(self) -> None:
        """Write what is left, then stop the thread."""
        try:
            self.drain()
        finally:
            with self._changed:
                self._closing = True
                self._changed.notify_all()
            if self._thread is not None:
                self._thread.join()
                self._thread = None

    def _wait_idle(self) -> None:
        while self._chunk is not None and self._failure is None:
            self._changed.wait()
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure

    def write(self, results: Sequence[Recorded]) -> None:
        """Write ``results`` in one transaction, again after the database comes back."""

        def transaction() -> None:
            with self.database.transaction() as session:
                record(
                    session,
                    results,
                    owner=self.owner,
                    now=self.clock(),
                    max_attempts=self.max_attempts,
                    max_age=self.max_age,
                )

        persist(transaction, patience=self.patience, what=f"recording {len(results)} outcomes")

    def _run(self) -> None:
        while True:
            with self._changed:
                while self._chunk is None and not self._closing:
                    self._changed.wait()
                if self._chunk is None:
                    return
                chunk = self._chunk
            try:
                self.write(chunk)
            except BaseException as exc:  # noqa: BLE001 - handed to the sender, which raises it
                with self._changed:
                    self._failure = exc
                    self._chunk = None
                    self._changed.notify_all()
                continue
            with self._changed:
                self._chunk = None
                self._changed.notify_all()
