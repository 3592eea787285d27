"""The worker loop behind ``newsletter worker``: delivers whatever the ledger holds, on any number
of processes and hosts.

Workers coordinate only through the ledger (claims under leases), so they can be started, killed
and restarted at any moment. A worker serves every edition that is sending (or one edition date),
sleeps until the next row or message is due, sends the subscription mails and posts the outgoing
webhooks that are due between its passes over the editions, and stops when asked (SIGTERM,
Ctrl-C) after handing back what it had claimed but not sent. A database that goes away for a while
(a restart) is waited for.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import func, select

from kernel import utcnow
from newsletter.db import Database
from newsletter.delivery import ledger
from newsletter.delivery.recording import persist
from newsletter.delivery.sender import DeliveryReport
from newsletter.delivery.transports import Transport
from newsletter.models import Delivery, DeliveryStatus, Issue, IssueStatus
from newsletter.services.outbox import Outbox
from newsletter.services.sending import SenderFactory
from newsletter.services.webhook_delivery import WebhookReport, WebhookSender

log = logging.getLogger(__name__)


@dataclass
class WorkerReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    deferred: int = 0
    editions: set[date] = field(default_factory=set)
    webhooks_delivered: int = 0
    webhooks_failed: int = 0

    def add(self, issue: Issue, report: DeliveryReport) -> None:
        self.sent += report.sent
        self.retried += report.retried
        self.failed += report.failed
        self.deferred += report.deferred
        if report.batches:
            self.editions.add(issue.edition_date)


@dataclass(frozen=True, slots=True)
class Worker:
    """The worker loop over a database, and factories for its transport and sender.

    With ``outbox``, the loop also sends the subscription mails that are due (over the same
    transport), before each round of editions.
    """

    database: Database
    transport: Callable[[], Transport]
    sender: SenderFactory
    outbox: Outbox | None = None
    #: The outgoing webhooks' delivery step, run between passes (None: webhooks are not sent).
    webhooks: Callable[[Callable[[], datetime]], WebhookSender] | None = None

    def _serving(self, edition_date: date | None) -> list[Issue]:
        return persist(lambda: self._editions(edition_date), what="looking for editions to send")

    def _editions(self, edition_date: date | None) -> list[Issue]:
        with self.database.transaction(readonly=True) as session:
            query = select(Issue).where(
                Issue.status == IssueStatus.SENDING, Issue.paused_at.is_(None)
            )
            if edition_date is not None:
                query = query.where(Issue.edition_date == edition_date)
            return list(session.scalars(query.order_by(Issue.edition_date)))

    def _open_rows(self, edition_date: date | None) -> tuple[int, datetime | None]:
        """Rows still queued or in flight for the editions served (not paused), and the next due
        time."""
        return persist(lambda: self._count_open(edition_date), what="counting the queue")

    def _count_open(self, edition_date: date | None) -> tuple[int, datetime | None]:
        with self.database.transaction(readonly=True) as session:
            query = (
                select(func.count(), func.min(Delivery.not_before))
                .select_from(Delivery)
                .join(Issue, Issue.id == Delivery.issue_id)
                .where(
                    Issue.status == IssueStatus.SENDING,
                    Issue.paused_at.is_(None),
                    Delivery.status.in_([DeliveryStatus.QUEUED, DeliveryStatus.SENDING]),
                )
            )
            if edition_date is not None:
                query = query.where(Issue.edition_date == edition_date)
            count, due = session.execute(query).one()
            return int(count or 0), due

    def run(
        self,
        *,
        stop: threading.Event,
        exit_when_idle: bool = False,
        edition_date: date | None = None,
        poll_seconds: float = 5.0,
        on_result: Callable[[ledger.Recorded], None] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> WorkerReport:
        """Deliver until ``stop`` is set (or, with ``exit_when_idle``, until nothing is left to
        do)."""
        report = WorkerReport()
        transport = self.transport()
        sender = self.sender(transport, on_result=on_result, stop=stop, clock=clock)
        hooks = self.webhooks(clock) if self.webhooks is not None else None
        try:
            # A database unreachable at the start is an error to report at once; one that goes
            # away later (a restart) is waited for.
            serving = self._editions(edition_date)
            while not stop.is_set():
                worked = persist(
                    lambda: self._deliver_mails(transport, stop),
                    what="sending the subscription mails",
                )
                if hooks is not None:
                    posted = persist(hooks.deliver_due, what="posting the outgoing webhooks")
                    report.webhooks_delivered += posted.delivered
                    report.webhooks_failed += posted.failed
                    worked = worked or posted.attempted > 0
                for issue in serving:
                    delivered = sender.deliver(issue)
                    report.add(issue, delivered)
                    if delivered.batches:
                        log.info(
                            "edition %s: %d sent, %d to retry, %d failed, %d paced%s",
                            issue.edition_date,
                            delivered.sent,
                            delivered.retried,
                            delivered.failed,
                            delivered.deferred,
                            "; the edition is sent" if delivered.finished else "",
                        )
                    worked = worked or delivered.batches > 0
                    if stop.is_set():
                        break
                if worked:
                    if not stop.is_set():
                        serving = self._serving(edition_date)
                    continue
                remaining, due = self._open_rows(edition_date)
                if exit_when_idle and remaining == 0:
                    break
                wait = poll_seconds
                mails_due = (
                    persist(self.outbox.next_due, what="looking for subscription mails")
                    if self.outbox is not None
                    else None
                )
                hooks_due = (
                    persist(hooks.next_due, what="looking for outgoing webhooks")
                    if hooks is not None
                    else None
                )
                for moment in (due, mails_due, hooks_due):
                    if moment is not None:
                        wait = min(wait, max((moment - clock()).total_seconds(), 0.2))
                if stop.wait(wait):
                    break
                serving = self._serving(edition_date)
        finally:
            if hooks is not None:
                hooks.close()
            sender.close()
            transport.close()
        return report

    def _deliver_mails(self, transport: Transport, stop: threading.Event) -> bool:
        if self.outbox is None:
            return False
        mails = self.outbox.deliver_due(transport, stop=stop)
        if mails.tried:
            log.info(
                "subscription mails: %d sent, %d to retry, %d failed",
                mails.sent,
                mails.retried,
                mails.failed,
            )
        return mails.tried > 0

    def deliver_webhooks(
        self,
        *,
        stop: threading.Event,
        poll_seconds: float = 5.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> WebhookReport:
        """Post the outgoing webhooks alone until ``stop`` is set (``newsletter web`` runs this, so
        that messages go out where no worker runs; with workers too, the claims keep each message
        to one of them). A failing pass is logged and tried again: the web process goes on."""
        total = WebhookReport()
        if self.webhooks is None:
            return total
        hooks = self.webhooks(clock)
        try:
            while not stop.is_set():
                try:
                    posted = hooks.deliver_due()
                    due = hooks.next_due()
                except Exception:  # logged (log.exception); the next pass tries again
                    log.exception("webhook delivery failed; trying again in %s s", poll_seconds)
                    stop.wait(poll_seconds)
                    continue
                total.delivered += posted.delivered
                total.failed += posted.failed
                if posted.attempted:
                    continue
                wait = poll_seconds
                if due is not None:
                    wait = min(wait, max((due - clock()).total_seconds(), 0.2))
                stop.wait(wait)
        finally:
            hooks.close()
        return total
