"""Sending an edition: claim a batch, personalise, hand to the transport, record, repeat.

The three overlap: the next batch is claimed while this one is sent, and outcomes are written by a
:class:`~newsletter.delivery.recording.Recorder` thread in chunks of half a flush while the next
chunk fills, so a crash re-sends at most one flush (plus the pool's window), with the same
Message-ID, so a duplicate is recognisable. Rows claimed but not attempted are released when the
sender stops on an error. When the database goes away for a while (a restart), the sender waits
for it, keeping what it has not written yet, instead of dropping it.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import timedelta
from email.utils import format_datetime

from sqlalchemy.exc import InterfaceError, OperationalError

from kernel.clock import Clock, utcnow
from newsletter.db import Database
from newsletter.delivery import ledger, outcomes
from newsletter.delivery.assembly import PreparedMessages, VariantSource
from newsletter.delivery.identity import SenderIdentity as SenderIdentity
from newsletter.delivery.identity import message_id, worker_name
from newsletter.delivery.identity import wire_address as wire_address
from newsletter.delivery.outcomes import DeliveryReport as DeliveryReport
from newsletter.delivery.pacing import Pacer, domain_of
from newsletter.delivery.recording import RECONNECT_PATIENCE, Recorder, persist
from newsletter.delivery.sample import send_test as send_test
from newsletter.delivery.transports import Envelope, Outcome, Transport
from newsletter.edition_states import finish_sending
from newsletter.errors import DatabaseError, TransportError
from newsletter.models import DeliveryStatus, Issue, IssueStatus
from newsletter.webhooks import events


class Stopped(Exception):
    """The worker was asked to stop: messages not yet handed to the transport stay queued."""


class Sender:
    def __init__(
        self,
        *,
        database: Database,
        transport: Transport,
        identity: SenderIdentity,
        batch_size: int = 200,
        flush_size: int = 50,
        lease: timedelta = timedelta(minutes=5),
        max_attempts: int = 8,
        max_age: timedelta = timedelta(hours=24),
        owner: str | None = None,
        clock: Clock = utcnow,
        on_result: Callable[[ledger.Recorded], None] | None = None,
        pacer: Pacer | None = None,
        stop: threading.Event | None = None,
        variants: VariantSource | None = None,
        patience: timedelta = RECONNECT_PATIENCE,
    ) -> None:
        self.database = database
        self.transport = transport
        self.identity = identity
        self.batch_size = batch_size
        self.flush_size = flush_size
        self.lease = lease
        self.max_attempts = max_attempts
        self.max_age = max_age
        self.owner = owner or worker_name()
        self.clock = clock
        self.on_result = on_result
        self.pacer = pacer
        self.stop = stop
        self.patience = patience
        self.messages = PreparedMessages(database=database, identity=identity, variants=variants)
        self.recorder = Recorder(
            database=database,
            owner=self.owner,
            clock=clock,
            max_attempts=max_attempts,
            max_age=max_age,
            patience=patience,
        )
        self._pool: ThreadPoolExecutor | None = None
        self._claimer: ThreadPoolExecutor | None = None

    def deliver(self, issue: Issue) -> DeliveryReport:
        """Deliver every due row of ``issue``; return what happened.

        The next batch is claimed while this one is sent; a claimed batch that will not be sent
        (the worker stops, the edition is paused, an error) goes back to the queue.
        """
        report = DeliveryReport()
        if self._claimer is None:
            self._claimer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="claim")
        upcoming: Future[list[ledger.Claimed] | None] | None = None
        try:
            if self.stop is None or not self.stop.is_set():
                upcoming = self._claimer.submit(self._claim, issue)
            while upcoming is not None:
                batch = upcoming.result()
                upcoming = None
                if batch is None:
                    report.held = True
                    break  # paused or cancelled by an operator meanwhile
                if not batch:
                    break
                if self.stop is not None and self.stop.is_set():
                    self._release([item.delivery_id for item in batch])
                    break
                upcoming = self._claimer.submit(self._claim, issue)
                report.batches += 1
                try:
                    self._send_batch(issue, batch, report)
                except Stopped:
                    break
        finally:
            if upcoming is not None:
                self._release_claim(upcoming)
        self._finish(issue, report)
        return report

    def _claim(self, issue: Issue) -> list[ledger.Claimed] | None:
        """The next batch (empty when nothing is due), or None when the edition is on hold."""

        def transaction() -> list[ledger.Claimed] | None:
            now = self.clock()
            with self.database.transaction() as session:
                current = session.get(Issue, issue.id)
                if (
                    current is None
                    or current.status is not IssueStatus.SENDING
                    or current.paused_at
                ):
                    return None
                ledger.reap_expired(session, issue.id, now=now)
                return ledger.claim_batch(
                    session,
                    issue.id,
                    owner=self.owner,
                    size=self.batch_size,
                    now=now,
                    lease=self.lease,
                )

        # A claim whose commit was lost with the connection leaves its rows leased to this worker
        # until the lease expires; they are not lost, only late.
        return persist(transaction, patience=self.patience, what="claiming a batch")

    def _release_claim(self, upcoming: Future[list[ledger.Claimed] | None]) -> None:
        """Give back a batch claimed ahead that will not be sent."""
        try:
            batch = upcoming.result()
        except Exception:  # noqa: BLE001 - no batch was claimed; the first error is raised
            return
        if batch:
            self._release([item.delivery_id for item in batch])

    def _release(self, delivery_ids: list[int]) -> None:
        if not delivery_ids:
            return

        def transaction() -> None:
            with self.database.transaction() as session:
                ledger.release(session, delivery_ids, owner=self.owner)

        persist(transaction, patience=self.patience, what="releasing claimed rows")

    def close(self) -> None:
        try:
            self.recorder.close()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
            if self._claimer is not None:
                self._claimer.shutdown(wait=True)
                self._claimer = None

    def _send_one(self, issue: Issue, item: ledger.Claimed, date_header: str) -> ledger.Recorded:
        """Build and send one message. A fault of this message alone (its text, its address, an
        unexpected error) fails its delivery with the reason; the relay being unusable, or the
        worker stopping, stops the whole send instead."""
        if self.stop is not None and self.stop.is_set():
            raise Stopped("the worker is stopping")
        try:
            key, prepared = self.messages.get(issue, item)
            mid = message_id(self.identity, issue, item.subscriber_id)
            recipient = wire_address(item.email)
            body = prepared.personalise(self.messages.values(item, recipient, mid, date_header))
            result = self.transport.send(
                Envelope(
                    sender=self.identity.envelope_sender,
                    recipient=recipient,
                    message_id=mid,
                    wire_ready=True,
                ),
                body,
            )
        except (TransportError, DatabaseError, Stopped, OperationalError, InterfaceError):
            raise  # the relay, the worker or the database: not this message's fault
        except Exception as exc:  # noqa: BLE001 - one message's fault is recorded, not raised
            return outcomes.unsendable(item, exc)
        return outcomes.recorded(item, result, message_id=mid, variant_key=key)

    def _send_batch(
        self, issue: Issue, batch: list[ledger.Claimed], report: DeliveryReport
    ) -> None:
        """Send a claimed batch (in parallel on a pooled transport); record in small chunks.

        Whatever happens, every message the transport answered is recorded, and every claimed row
        that was not attempted is released for another worker.
        """
        pending: list[ledger.Recorded] = []
        attempted: set[int] = set()
        date_header = format_datetime(self.clock())
        failure: BaseException | None = None
        # Half a flush is written while the other half fills: never more than a flush unwritten.
        chunk = max(1, self.flush_size // 2)
        try:
            for item in batch:
                # Prebuild the variants here, not in the sending threads; a variant that cannot
                # be built fails its deliveries in _send_one, with the reason.
                with contextlib.suppress(Exception):
                    self.messages.get(issue, item)
            if self.pacer is not None:
                batch = self._pace(batch, pending, attempted)
                for deferred in pending:
                    outcomes.count(report, deferred)
            if self.transport.concurrency > 1:
                results = self._parallel(issue, batch, date_header)
            else:
                results = (
                    (item, _call(self._send_one, issue, item, date_header)) for item in batch
                )
            for item, outcome in results:
                if isinstance(outcome, BaseException):
                    failure = failure or outcome
                    if self.transport.concurrency == 1:
                        break  # stop at once; the rest is released below
                    continue  # parallel sends already under way are still recorded
                attempted.add(item.delivery_id)
                pending.append(outcome)
                outcomes.count(report, outcome)
                self._slow_route(item, outcome)
                if self.on_result is not None:
                    self.on_result(outcome)
                if len(pending) >= chunk:
                    self._hand_over(pending)
        finally:
            try:
                self._hand_over(pending)
            finally:
                unattempted = [
                    item.delivery_id for item in batch if item.delivery_id not in attempted
                ]
                self._release(unattempted)
        if failure is not None:
            self.recorder.drain()
            raise failure

    def _hand_over(self, pending: list[ledger.Recorded]) -> None:
        """Give the recorder a chunk (waiting for the one before); with a flush size of one,
        wait until it is written too."""
        if pending:
            self.recorder.add(pending)
            pending.clear()
        if self.flush_size < 2:
            self.recorder.drain()

    def _pace(
        self,
        batch: list[ledger.Claimed],
        pending: list[ledger.Recorded],
        attempted: set[int],
    ) -> list[ledger.Claimed]:
        """Keep the messages whose routes have room now; put the others back in the queue."""
        assert self.pacer is not None
        go = []
        for item in batch:
            try:
                wait = self.pacer.delay(wire_address(item.email))
            except UnicodeError:
                wait = 0  # an address with no ASCII form: _send_one fails it with the reason
            if wait <= 0:
                go.append(item)
                continue
            attempted.add(item.delivery_id)
            pending.append(
                ledger.Recorded(
                    delivery_id=item.delivery_id,
                    subscriber_id=item.subscriber_id,
                    outcome=Outcome.DEFERRED,
                    attempts=item.attempts,
                    defer_seconds=wait,
                )
            )
        return go

    def _slow_route(self, item: ledger.Claimed, recorded: ledger.Recorded) -> None:
        if self.pacer is None or recorded.code not in (421, 451):
            return
        if recorded.code == 451 and recorded.detail.startswith("RCPT"):
            route = domain_of(wire_address(item.email))
        else:
            route = self.pacer.relay
        self.pacer.slow_down(route, reason=recorded.detail)

    def _parallel(
        self, issue: Issue, batch: list[ledger.Claimed], date_header: str
    ) -> Iterator[tuple[ledger.Claimed, ledger.Recorded | BaseException]]:
        """Send on the pool, results in order, never more than two messages per connection ahead
        of what was recorded: a crash re-sends at most a flush plus that window."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=self.transport.concurrency, thread_name_prefix="send"
            )
        window = 2 * self.transport.concurrency
        pending: deque[tuple[ledger.Claimed, Future[ledger.Recorded]]] = deque()
        items = iter(batch)
        failed = False
        try:
            while True:
                while not failed and len(pending) < window:
                    item = next(items, None)
                    if item is None:
                        break
                    pending.append(
                        (item, self._pool.submit(self._send_one, issue, item, date_header))
                    )
                if not pending:
                    return
                item, future = pending.popleft()
                try:
                    yield item, future.result()
                except Exception as exc:  # noqa: BLE001 - handed to the caller, which re-raises it
                    failed = True  # submit nothing more; what is in flight is still recorded
                    yield item, exc
        finally:
            for _, future in pending:
                future.cancel()
            wait([future for _, future in pending])

    def _finish(self, issue: Issue, report: DeliveryReport) -> None:
        self.recorder.drain()
        persist(
            lambda: self._settle(issue, report), patience=self.patience, what="counting the rows"
        )

    def _settle(self, issue: Issue, report: DeliveryReport) -> None:
        with self.database.transaction() as session:
            report.counts = ledger.counts(session, issue.id)
            open_rows = report.counts[DeliveryStatus.QUEUED] + report.counts[DeliveryStatus.SENDING]
            report.queued_later = report.counts[DeliveryStatus.QUEUED]
            report.next_due = ledger.next_due(session, issue.id)
            current = session.get(Issue, issue.id)
            if open_rows == 0 and current is not None and current.status is IssueStatus.SENDING:
                finish_sending(current, now=self.clock())
                report.finished = True
                events.emit(
                    session,
                    events.EDITION_SENT,
                    {
                        "edition": events.edition_data(current),
                        "deliveries": {
                            status.value: count for status, count in report.counts.items()
                        },
                    },
                    now=self.clock(),
                )


def _call(
    function: Callable[..., ledger.Recorded], *args: object
) -> ledger.Recorded | BaseException:
    try:
        return function(*args)
    except Exception as exc:  # noqa: BLE001 - handed to the caller, which re-raises it
        return exc
