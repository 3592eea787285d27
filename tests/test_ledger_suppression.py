"""Finding 5: every ledger write survives a suppression of its recipients between claim and record.

An unsubscribe, a bounce report, a complaint, a delete or an erasure can land while a worker holds a
batch. Whatever arrives, the flush of outcomes is written (sent marks included), a complaint is never
replaced, and nobody who left gets the edition later through a retry.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import date, timedelta

import pytest
from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from newsletter.bootstrap import App
from newsletter.delivery import ledger
from newsletter.delivery.bounces import Report, record_report
from newsletter.editions import get_issue
from newsletter.models import BounceKind, Delivery, DeliveryStatus, IssueStatus
from subscribers import privacy, signup
from subscribers.model import Subscriber, SubscriberStatus
from subscribers.service import add_subscriber
from tests.conftest import FIXED_NOW, SmtpServer, _truncate_postgres

EDITION = date(2026, 11, 24)
LEASE = timedelta(minutes=5)
KINDS = ["unsubscribe", "bounce", "complaint", "delete", "erase"]


def _release(session: Session, subscriber_id: int) -> None:
    session.execute(delete(Delivery).where(Delivery.subscriber_id == subscriber_id))


def suppress_now(app: App, kind: str, email: str) -> None:
    """What a web request, a bounce mailbox or an operator does meanwhile, in its own transaction."""
    with app.database.transaction() as session:
        subscriber = session.scalars(select(Subscriber).where(Subscriber.email == email)).one()
        if kind == "unsubscribe":
            signup.leave(session, subscriber.id, now=FIXED_NOW, reason="one-click")
        elif kind in ("bounce", "complaint"):
            report = Report(
                report_id=f"<{kind}-{email}>",
                recipient=email,
                kind=BounceKind.COMPLAINT if kind == "complaint" else BounceKind.HARD,
                status=None if kind == "complaint" else "5.1.1",
                diagnostic=f"{kind} report",
            )
            record_report(session, report, source="test", now=FIXED_NOW)
        elif kind == "delete":
            privacy.delete_subscriber(session, subscriber, release=_release, now=FIXED_NOW)
        else:
            privacy.erase(session, email, release=_release, now=FIXED_NOW)


def edition_with_readers(app: App, count: int) -> int:
    app.sources.fetch(now=FIXED_NOW)
    issue_id = app.editions.build(edition_date=EDITION, now=FIXED_NOW).issue_id
    with app.database.transaction() as session:
        for number in range(count):
            add_subscriber(session, f"reader{number}@example.com", confirmed=True)
    return issue_id


@pytest.mark.parametrize("kind", KINDS)
def test_finding5_every_ledger_write_survives_a_suppression_between_claim_and_record(
    app_factory: Callable[..., App], database_url: str, kind: str
) -> None:
    app = app_factory(database_url=database_url)
    issue_id = edition_with_readers(app, 5)
    with app.database.transaction() as session:
        ledger.enqueue_issue(session, issue_id, now=FIXED_NOW, not_before=FIXED_NOW)
        batch = ledger.claim_batch(
            session, issue_id, owner="w1", size=10, now=FIXED_NOW, lease=LEASE
        )
    assert len(batch) == 5
    for item in batch:
        suppress_now(app, kind, item.email)

    sent, retry, failed, refused, deferred = batch
    outcomes = [
        ledger.Recorded(sent.delivery_id, sent.subscriber_id, "sent", 1, message_id="<m0@e>"),
        ledger.Recorded(
            retry.delivery_id, retry.subscriber_id, "retry", 1, detail="451 4.7.1 later"
        ),
        ledger.Recorded(failed.delivery_id, failed.subscriber_id, "failed", 1, detail="554 no"),
        ledger.Recorded(
            refused.delivery_id,
            refused.subscriber_id,
            "failed",
            1,
            detail="550 5.1.1 no such user",
            suppress_recipient=True,
        ),
        ledger.Recorded(
            deferred.delivery_id, deferred.subscriber_id, "deferred", 1, defer_seconds=30
        ),
    ]
    later = FIXED_NOW + timedelta(seconds=5)
    with app.database.transaction() as session:
        ledger.record(session, outcomes, owner="w1", now=later, max_attempts=8)

    with app.database.transaction(readonly=True) as session:
        rows = {row.subscriber_id: row for row in session.scalars(select(Delivery))}
        people = {row.id: row for row in session.scalars(select(Subscriber))}
    if kind in ("delete", "erase"):
        assert rows == {} and people == {}
        return
    assert rows[sent.subscriber_id].status is DeliveryStatus.SENT
    assert rows[sent.subscriber_id].message_id == "<m0@e>"
    assert rows[failed.subscriber_id].status is DeliveryStatus.FAILED
    assert rows[refused.subscriber_id].status is DeliveryStatus.FAILED
    assert "550" in (rows[refused.subscriber_id].last_error or "")
    if kind == "complaint":
        # The complaint stands: a later refusal does not turn it into a bounce.
        assert people[refused.subscriber_id].status is SubscriberStatus.COMPLAINED
        assert "complaint" in (people[refused.subscriber_id].status_reason or "")
    else:
        assert people[refused.subscriber_id].status is SubscriberStatus.BOUNCED
    assert all(person.status is not SubscriberStatus.CONFIRMED for person in people.values())

    # The retried and the paced rows never go out to someone who left: the next claim, when they
    # are due, takes nothing and says why in the ledger.
    much_later = FIXED_NOW + timedelta(hours=6)
    with app.database.transaction() as session:
        assert ledger.reap_expired(session, issue_id, now=much_later) == 0
        assert (
            ledger.claim_batch(session, issue_id, owner="w2", size=10, now=much_later, lease=LEASE)
            == []
        )
        assert ledger.expire(session, issue_id, due_before=much_later) == 0
    with app.database.transaction(readonly=True) as session:
        for subscriber_id in (retry.subscriber_id, deferred.subscriber_id):
            row = session.get_one(Delivery, rows[subscriber_id].id)
            assert row.status is DeliveryStatus.SUPPRESSED
            assert row.lease_owner is None
            assert people[subscriber_id].status.value in (row.last_error or "")
        counts = ledger.counts(session, issue_id)
    assert counts[DeliveryStatus.QUEUED] == counts[DeliveryStatus.SENDING] == 0


def test_finding5_a_complaint_arriving_mid_send_keeps_the_flush_of_sent_marks(
    app_factory: Callable[..., App], database_url: str, smtp_server: SmtpServer
) -> None:
    """Through a real relay: one recipient is refused (550) and complains while the batch is out."""
    smtp_server.handler.replies["reader1@example.com"] = "550 5.1.1 No such user"
    app = app_factory(
        database_url=database_url,
        transport="smtp",
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
        flush_size=50,
    )
    issue_id = edition_with_readers(app, 4)
    complained: list[int] = []

    def complaint_arrives(result: ledger.Recorded) -> None:
        if not complained:  # after the first answer, before the flush is written
            complained.append(result.delivery_id)
            suppress_now(app, "complaint", "reader1@example.com")

    outcome = app.sending.send(
        edition_date=EDITION,
        now=FIXED_NOW,
        clock=lambda: FIXED_NOW,
        on_result=complaint_arrives,
    )
    assert outcome.report is not None
    assert (outcome.report.sent, outcome.report.failed) == (3, 1)
    assert sorted(message.recipients[0] for message in smtp_server.messages) == [
        "reader0@example.com",
        "reader2@example.com",
        "reader3@example.com",
    ]
    with app.database.transaction(readonly=True) as session:
        states = {
            email: (status, delivery)
            for email, status, delivery in session.execute(
                select(Subscriber.email, Subscriber.status, Delivery.status).join(
                    Delivery, Delivery.subscriber_id == Subscriber.id
                )
            )
        }
    assert states["reader1@example.com"] == (SubscriberStatus.COMPLAINED, DeliveryStatus.FAILED)
    for number in (0, 2, 3):
        assert states[f"reader{number}@example.com"] == (
            SubscriberStatus.CONFIRMED,
            DeliveryStatus.SENT,
        )
    # Nothing is left in flight for a later worker to send a second time.
    with app.database.transaction() as session:
        again = ledger.claim_batch(
            session, issue_id, owner="w2", size=10, now=FIXED_NOW + timedelta(hours=1), lease=LEASE
        )
    assert again == []
    with app.database.transaction(readonly=True) as session:
        issue = get_issue(session, EDITION)
        assert issue is not None and issue.status is IssueStatus.SENT


@pytest.mark.postgres
def test_finding5_a_complaint_committed_while_the_flush_waits_is_not_overwritten(
    app_factory: Callable[..., App], postgres_server_url: str
) -> None:
    """PostgreSQL, truly concurrent: the complaint's transaction holds the subscriber's row when
    the flush that bounces the same recipient starts; the flush waits, then sees the complaint."""
    _truncate_postgres(postgres_server_url)
    app = app_factory(database_url=postgres_server_url)
    issue_id = edition_with_readers(app, 2)
    with app.database.transaction() as session:
        ledger.enqueue_issue(session, issue_id, now=FIXED_NOW, not_before=FIXED_NOW)
        sent, refused = ledger.claim_batch(
            session, issue_id, owner="w1", size=10, now=FIXED_NOW, lease=LEASE
        )
    outcomes = [
        ledger.Recorded(sent.delivery_id, sent.subscriber_id, "sent", 1, message_id="<m@e>"),
        ledger.Recorded(
            refused.delivery_id,
            refused.subscriber_id,
            "failed",
            1,
            detail="550 5.1.1 no such user",
            suppress_recipient=True,
        ),
    ]
    errors: list[BaseException] = []

    def flush() -> None:
        try:
            with app.database.transaction() as session:
                ledger.record(session, outcomes, owner="w1", now=FIXED_NOW, max_attempts=8)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    with app.database.transaction() as complaint:
        report = Report("<c@isp>", refused.email, BounceKind.COMPLAINT, diagnostic="abuse")
        assert record_report(complaint, report, source="test", now=FIXED_NOW) == "suppressed"
        complaint.flush()
        worker = threading.Thread(target=flush)
        worker.start()
        assert _waits_for_a_lock(app), "the flush never waited for the complaint's row"
    worker.join(timeout=60)
    assert not worker.is_alive() and errors == []
    with app.database.transaction(readonly=True) as session:
        person = session.get_one(Subscriber, refused.subscriber_id)
        assert person.status is SubscriberStatus.COMPLAINED
        assert session.get_one(Delivery, sent.delivery_id).status is DeliveryStatus.SENT
        assert session.get_one(Delivery, refused.delivery_id).status is DeliveryStatus.FAILED


def _waits_for_a_lock(app: App, *, seconds: float = 30.0) -> bool:
    """Poll PostgreSQL until another session of this database waits on a row lock."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with app.database.transaction(readonly=True) as session:
            waiting = session.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
                )
            )
        if waiting:
            return True
        time.sleep(0.05)
    return False
