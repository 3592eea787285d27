"""Delivering the outbox of subscription mails, and what operators see of it.

The subscription services write the mails (:mod:`newsletter.delivery.outbox`); this module sends
them. ``newsletter worker`` and ``newsletter run`` deliver them in their loop; ``newsletter web``
delivers them itself as well, just after the page that wrote one has answered and every few seconds
for retries and for mails left by a process that died. Several processes may deliver at once: a
mail is claimed under a lease, so it is sent once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from newsletter.delivery import outbox
from newsletter.delivery.transports import Envelope, Outcome, SendResult, Transport
from newsletter.errors import NewsletterError, UsageError
from newsletter.services.queued import Transactions

log = logging.getLogger(__name__)

#: Mails claimed at once.
BATCH = 20


@dataclass
class OutboxReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    #: The transport stopped answering; the round ended early.
    broken: bool = False

    @property
    def tried(self) -> int:
        return self.sent + self.retried + self.failed


@dataclass(frozen=True, slots=True)
class Pruned:
    """Finished mails deleted (or, in a dry run, that would be), and the cut-off."""

    mails: int
    before: datetime


@dataclass(frozen=True, slots=True)
class OutboxState:
    """What operators see: mails in each status, and the latest given up with their reasons."""

    counts: dict[str, int]
    failures: list[outbox.Failure]
    next_due: datetime | None


@dataclass
class Outbox:
    """Sends due subscription mails over a transport it is given."""

    database: Transactions
    clock: Callable[[], datetime]
    max_attempts: int = 8
    lease: timedelta = timedelta(seconds=120)
    #: Hears of each mail's kind and outcome ("sent", "retry", "failed").
    on_result: Callable[[str, str], None] | None = None

    def deliver_due(
        self, transport: Transport, *, stop: threading.Event | None = None
    ) -> OutboxReport:
        """Send every mail due now, a batch at a time; raises nothing a transport raises."""
        report = OutboxReport()
        while stop is None or not stop.is_set():
            now = self.clock()
            with self.database.transaction() as session:
                claimed = outbox.claim(session, now=now, lease=self.lease, limit=BATCH)
            if not claimed:
                break
            tried = []
            broken: SendResult | None = None
            for item in claimed:
                if broken is None:
                    result = self._send(transport, item)
                    if result.outcome is Outcome.RETRY and result.code is None:
                        # No relay answer (a timeout, a lost connection): the rest of the batch
                        # waits without a try, instead of each waiting for the same timeout.
                        broken = SendResult(Outcome.DEFERRED, None, result.detail)
                else:
                    result = broken
                tried.append(outbox.Tried(item, result))
            with self.database.transaction() as session:
                outbox.record(session, tried, now=self.clock(), max_attempts=self.max_attempts)
            for tried_item in tried:
                self._count(report, tried_item)
            if broken is not None:
                report.broken = True
                break
            if len(claimed) < BATCH:
                # Nothing else was due when this batch was claimed: no claim only to find that out
                # (a mail written since nudges its own round).
                break
        return report

    def _send(self, transport: Transport, item: outbox.Claimed) -> SendResult:
        envelope = Envelope(
            sender=item.sender, recipient=item.recipient, message_id=item.message_id
        )
        try:
            return transport.send(envelope, item.message)
        except NewsletterError as exc:
            # The transport cannot work now (no relay, a timeout, bad credentials): try again later.
            transport.close()
            return SendResult(Outcome.RETRY, None, str(exc))
        except Exception as exc:  # a bug must not lose the mail: retry it, and say so
            log.exception("%s mail %d could not be handed over", item.kind, item.id)
            return SendResult(Outcome.RETRY, None, f"{type(exc).__name__}")

    def _count(self, report: OutboxReport, item: outbox.Tried) -> None:
        claimed, result = item.claimed, item.result
        if result.outcome is Outcome.SENT:
            report.sent += 1
            outcome = "sent"
        elif result.outcome is Outcome.DEFERRED:
            report.retried += 1
            outcome = "retry"
        elif result.outcome is Outcome.FAILED or claimed.attempt >= self.max_attempts:
            report.failed += 1
            outcome = "failed"
            log.error(
                "%s mail %d to subscriber %s given up after %d tries: %s",
                claimed.kind,
                claimed.id,
                claimed.subscriber_id,
                claimed.attempt,
                result.detail,
            )
        else:
            report.retried += 1
            outcome = "retry"
            log.warning(
                "%s mail %d to subscriber %s not sent (try %d), to retry: %s",
                claimed.kind,
                claimed.id,
                claimed.subscriber_id,
                claimed.attempt,
                result.detail,
            )
        if self.on_result is not None:
            self.on_result(claimed.kind, outcome)

    def prune(self, *, older_than_days: int, now: datetime, dry_run: bool = False) -> Pruned:
        """Delete the mails sent or given up more than ``older_than_days`` days ago (by when they
        were written); mails waiting or in flight are never touched."""
        if older_than_days < 1:
            raise UsageError(
                f"--older-than must be at least 1 day, not {older_than_days}",
                hint="the latest mails given up, with their reasons, are what 'newsletter outbox' shows",
            )
        before = now - timedelta(days=older_than_days)
        if dry_run:
            with self.database.transaction(readonly=True) as session:
                return Pruned(outbox.prunable(session, before=before), before)
        with self.database.transaction() as session:
            return Pruned(outbox.prune(session, before=before), before)

    def next_due(self) -> datetime | None:
        with self.database.transaction(readonly=True) as session:
            return outbox.next_due(session)

    def state(self, *, failures: int = 20) -> OutboxState:
        with self.database.transaction(readonly=True) as session:
            return OutboxState(
                outbox.counts(session),
                outbox.failures(session, limit=failures),
                outbox.next_due(session),
            )


@dataclass
class OutboxPump:
    """One process's delivery of the outbox, a round at a time: started by a page that wrote a
    mail (:meth:`nudge`, run after the answer has been sent) or by :meth:`run`'s timer.

    A nudge that finds a round under way returns at once and makes that round go round once more:
    no request thread waits for another's SMTP, a mail written meanwhile is not left for the timer,
    and mails written together under load go out in one batch (one claim, one record).
    """

    outbox: Outbox
    transport: Callable[[], Transport]
    poll_seconds: float = 5.0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _again: threading.Event = field(default_factory=threading.Event)
    _wake: threading.Event = field(default_factory=threading.Event)
    _open: Transport | None = None

    def nudge(self) -> None:
        """A round now, unless one is under way (then that one goes round once more)."""
        self._again.set()
        while self._lock.acquire(blocking=False):
            try:
                self._again.clear()
                self._round()
            finally:
                self._lock.release()
            if not self._again.is_set():
                return

    def _round(self) -> None:
        try:
            if self._open is None:
                self._open = self.transport()
            if self.outbox.deliver_due(self._open).broken:
                self._open.close()
                self._open = None
        except Exception:  # the database went away: the timer tries again
            log.exception("the subscription mails could not be delivered now")

    def run(self, *, stop: threading.Event, before: Callable[[], None] | None = None) -> None:
        """Deliver what is due (mails left by a process that died, retries) whenever it is due,
        until ``stop`` is set (then call :meth:`wake`); ``before`` runs after the first round.

        A round runs only when something is due: a mail a page just wrote is the page's to send
        (:meth:`nudge`), so the timer and the pages seldom meet.
        """
        first = True
        while not stop.is_set():
            self._wake.clear()
            try:
                due = self.outbox.next_due()
            except Exception:  # noqa: BLE001  (the database went away: poll again later)
                due = None
            wait = self.poll_seconds
            if due is not None:
                wait = min(wait, (due - self.outbox.clock()).total_seconds())
                if wait <= 0:  # left by a process that died, a retry, or a passed lease
                    self.nudge()
                    wait = 0.05
            if first:
                first = False
                if before is not None:
                    before()
            self._wake.wait(wait)

    def wake(self) -> None:
        self._wake.set()

    def close(self) -> None:
        with self._lock:
            transport, self._open = self._open, None
        if transport is not None:
            transport.close()
