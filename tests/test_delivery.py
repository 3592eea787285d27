"""The ledger and the sender on SQLite and PostgreSQL, through a Maildir and a real SMTP server."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from newsletter.bootstrap import App
from newsletter.delivery import ledger
from newsletter.delivery.smtp import SmtpConfig, SmtpTransport
from newsletter.delivery.transports import FolderTransport
from newsletter.errors import TransportError
from newsletter.models import Delivery, DeliveryStatus, Issue, IssueStatus
from subscribers.model import Subscriber, SubscriberStatus, unsubscribe
from subscribers.service import add_subscriber
from tests.conftest import FIXED_NOW, SmtpServer, free_port

EDITION = date(2026, 11, 24)


def edition_app(
    app_factory: Callable[..., App], database_url: str, **overrides: object
) -> tuple[App, int]:
    app = app_factory(database_url=database_url, **overrides)
    app.sources.fetch(now=FIXED_NOW)
    result = app.editions.build(edition_date=EDITION, now=FIXED_NOW)
    return app, result.issue_id


def add_readers(app: App, count: int, *, confirmed: bool = True, **fields: object) -> list[int]:
    ids = []
    with app.database.transaction() as session:
        for number in range(count):
            subscriber, _ = add_subscriber(
                session, f"reader{number}@example.com", confirmed=confirmed
            )
            for key, value in fields.items():
                setattr(subscriber, key, value)
            ids.append(subscriber.id)
    return ids


def issue_of(app: App, issue_id: int) -> Issue:
    with app.database.transaction(readonly=True) as session:
        return session.get_one(Issue, issue_id)


def statuses(app: App, issue_id: int) -> dict[DeliveryStatus, int]:
    with app.database.transaction(readonly=True) as session:
        return ledger.counts(session, issue_id)


def test_enqueue_takes_confirmed_subscribers_once(
    app_factory: Callable[..., App], database_url: str
) -> None:
    app, issue_id = edition_app(app_factory, database_url)
    add_readers(app, 5)
    with app.database.transaction() as session:
        add_subscriber(session, "pending@example.com")
        gone, _ = add_subscriber(session, "gone@example.com", confirmed=True)
        unsubscribe(gone)
    with app.database.transaction() as session:
        assert ledger.enqueue_issue(session, issue_id, now=FIXED_NOW, not_before=FIXED_NOW) == 5
    with app.database.transaction() as session:
        assert ledger.enqueue_issue(session, issue_id, now=FIXED_NOW, not_before=FIXED_NOW) == 0
    assert statuses(app, issue_id)[DeliveryStatus.QUEUED] == 5


def test_enqueue_at_each_subscribers_local_hour(
    app_factory: Callable[..., App], database_url: str
) -> None:
    app, issue_id = edition_app(app_factory, database_url)
    with app.database.transaction() as session:
        tokyo, _ = add_subscriber(
            session, "tokyo@example.com", confirmed=True, timezone="Asia/Tokyo"
        )
        tokyo.send_hour = 7
        berlin, _ = add_subscriber(
            session, "berlin@example.com", confirmed=True, timezone="Europe/Berlin"
        )
        berlin.send_hour = 7
        default, _ = add_subscriber(session, "default@example.com", confirmed=True)
        ids = {"tokyo": tokyo.id, "berlin": berlin.id, "default": default.id}
    with app.database.transaction() as session:
        added = ledger.enqueue_issue(
            session,
            issue_id,
            now=FIXED_NOW,
            edition_date=EDITION,
            default_zone="UTC",
            default_clock=time(6, 30),
        )
        assert added == 3
        due = dict(session.execute(select(Delivery.subscriber_id, Delivery.not_before)).all())
    assert due[ids["tokyo"]] == datetime(2026, 11, 23, 22, 0, tzinfo=UTC)
    assert due[ids["berlin"]] == datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
    assert due[ids["default"]] == datetime(2026, 11, 24, 6, 30, tzinfo=UTC)


def test_local_send_time_across_dst() -> None:
    # Europe/Berlin leaves summer time on 25 Oct 2026 and enters it on 29 Mar 2026.
    assert ledger.local_send_time(date(2026, 10, 24), "Europe/Berlin", time(7)).hour == 5
    assert ledger.local_send_time(date(2026, 10, 25), "Europe/Berlin", time(7)).hour == 6
    assert ledger.local_send_time(date(2026, 3, 29), "Europe/Berlin", time(7)).hour == 5
    # 02:30 does not exist on 29 Mar in Berlin: it is sent after the gap, never before.
    assert ledger.local_send_time(date(2026, 3, 29), "Europe/Berlin", time(2, 30)) >= datetime(
        2026, 3, 29, 1, 0, tzinfo=UTC
    )


def test_claims_are_disjoint_and_leases_expire(
    app_factory: Callable[..., App], database_url: str
) -> None:
    app, issue_id = edition_app(app_factory, database_url)
    add_readers(app, 10)
    lease = timedelta(minutes=5)
    with app.database.transaction() as session:
        ledger.enqueue_issue(session, issue_id, now=FIXED_NOW, not_before=FIXED_NOW)
    with app.database.transaction() as session:
        first = ledger.claim_batch(session, issue_id, owner="a", size=4, now=FIXED_NOW, lease=lease)
    with app.database.transaction() as session:
        second = ledger.claim_batch(
            session, issue_id, owner="b", size=4, now=FIXED_NOW, lease=lease
        )
    assert len(first) == len(second) == 4
    assert not {item.delivery_id for item in first} & {item.delivery_id for item in second}
    assert all(item.attempts == 1 for item in first)
    # Worker "a" dies; its lease runs out and its rows go to the next claimer.
    later = FIXED_NOW + lease + timedelta(seconds=1)
    with app.database.transaction() as session:
        assert ledger.reap_expired(session, issue_id, now=later) == 8
        third = ledger.claim_batch(session, issue_id, owner="c", size=100, now=later, lease=lease)
    assert len(third) == 10


def test_rows_not_yet_due_are_not_claimed(
    app_factory: Callable[..., App], database_url: str
) -> None:
    app, issue_id = edition_app(app_factory, database_url)
    add_readers(app, 3)
    with app.database.transaction() as session:
        ledger.enqueue_issue(
            session, issue_id, now=FIXED_NOW, not_before=FIXED_NOW + timedelta(hours=1)
        )
        assert (
            ledger.claim_batch(
                session, issue_id, owner="a", size=10, now=FIXED_NOW, lease=timedelta(minutes=5)
            )
            == []
        )
        assert ledger.next_due(session, issue_id) == FIXED_NOW + timedelta(hours=1)


def test_folder_send_delivers_once_and_finishes_the_edition(
    app_factory: Callable[..., App], database_url: str, tmp_path: Path
) -> None:
    app, issue_id = edition_app(app_factory, database_url)
    add_readers(app, 7)
    first = app.sending.send(edition_date=EDITION, now=FIXED_NOW)
    assert first.report is not None
    assert (first.enqueued, first.report.sent, first.report.finished) == (7, 7, True)
    files = sorted((tmp_path / "outbox" / "new").iterdir())
    assert len(files) == 7
    recipients = set()
    for path in files:
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        recipients.add(message["Delivered-To"])
        assert message["Return-Path"] == "<digest@example.com>"
    assert recipients == {f"reader{number}@example.com" for number in range(7)}
    assert issue_of(app, issue_id).status is IssueStatus.SENT
    again = app.sending.send(edition_date=EDITION, now=FIXED_NOW)
    assert again.already_sent
    assert len(list((tmp_path / "outbox" / "new").iterdir())) == 7


def test_message_ids_are_stable_per_edition_and_subscriber(
    app_factory: Callable[..., App], database_url: str
) -> None:
    app, _issue_id = edition_app(app_factory, database_url)
    add_readers(app, 3)
    app.sending.send(edition_date=EDITION, now=FIXED_NOW)
    with app.database.transaction(readonly=True) as session:
        rows = session.execute(select(Delivery.subscriber_id, Delivery.message_id)).all()
    ids = [message_id for _, message_id in rows]
    assert len(set(ids)) == 3
    for subscriber_id, message_id in rows:
        assert message_id is not None
        assert message_id.startswith(f"<20261124.{subscriber_id}.")
        assert message_id.endswith("@example.com>")


def test_a_crashed_send_resumes_without_duplicates(
    app_factory: Callable[..., App], database_url: str, tmp_path: Path
) -> None:
    """A worker killed after claiming: its lease expires, the next send delivers the rest once."""
    app, issue_id = edition_app(app_factory, database_url, batch_size=3)
    add_readers(app, 6)
    with app.database.transaction() as session:
        issue = session.get_one(Issue, issue_id)
        issue.status = IssueStatus.SENDING
        ledger.enqueue_issue(session, issue_id, now=FIXED_NOW, not_before=FIXED_NOW)
        ledger.claim_batch(
            session, issue_id, owner="dead", size=3, now=FIXED_NOW, lease=timedelta(minutes=5)
        )
    later = FIXED_NOW + timedelta(minutes=6)
    report = app.sender(app.transport(), clock=lambda: later).deliver(issue_of(app, issue_id))
    assert report.sent == 6
    assert report.finished
    assert len(list((tmp_path / "outbox" / "new").iterdir())) == 6


def smtp_app(
    app_factory: Callable[..., App], database_url: str, server: SmtpServer, **overrides: object
) -> tuple[App, int]:
    return edition_app(
        app_factory,
        database_url,
        transport="smtp",
        smtp_host=server.host,
        smtp_port=server.port,
        **overrides,
    )


def test_smtp_send_reaches_the_server(
    app_factory: Callable[..., App], database_url: str, smtp_server: SmtpServer
) -> None:
    app, issue_id = smtp_app(app_factory, database_url, smtp_server)
    add_readers(app, 4)
    outcome = app.sending.send(edition_date=EDITION, now=FIXED_NOW)
    assert outcome.report is not None and outcome.report.sent == 4
    assert sorted(received.recipients[0] for received in smtp_server.messages) == [
        f"reader{number}@example.com" for number in range(4)
    ]
    for received in smtp_server.messages:
        assert received.sender == "digest@example.com"
        message = email.message_from_bytes(received.data, policy=email.policy.default)
        assert message["To"].addresses[0].addr_spec == received.recipients[0]
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert issue_of(app, issue_id).status is IssueStatus.SENT


def test_smtp_permanent_refusal_fails_and_suppresses(
    app_factory: Callable[..., App], database_url: str, smtp_server: SmtpServer
) -> None:
    smtp_server.handler.replies["reader1@example.com"] = "550 5.1.1 No such user"
    app, issue_id = smtp_app(app_factory, database_url, smtp_server)
    ids = add_readers(app, 3)
    outcome = app.sending.send(edition_date=EDITION, now=FIXED_NOW)
    assert outcome.report is not None
    assert (outcome.report.sent, outcome.report.failed, outcome.report.suppressed) == (2, 1, 1)
    with app.database.transaction(readonly=True) as session:
        bounced = session.get_one(Subscriber, ids[1])
        assert bounced.status is SubscriberStatus.BOUNCED
        assert "550" in (bounced.status_reason or "")
        failed = session.scalar(select(Delivery).where(Delivery.subscriber_id == ids[1]))
        assert failed is not None and failed.status is DeliveryStatus.FAILED
        assert "No such user" in (failed.last_error or "")
    assert issue_of(app, issue_id).status is IssueStatus.SENT


def test_smtp_temporary_refusal_is_retried_later(
    app_factory: Callable[..., App], database_url: str, smtp_server: SmtpServer
) -> None:
    smtp_server.handler.replies["reader0@example.com"] = "451 4.7.1 Try again later"
    app, issue_id = smtp_app(app_factory, database_url, smtp_server)
    add_readers(app, 2)
    outcome = app.sending.send(edition_date=EDITION, now=FIXED_NOW, clock=lambda: FIXED_NOW)
    assert outcome.report is not None
    assert (outcome.report.sent, outcome.report.retried) == (1, 1)
    assert not outcome.report.finished
    with app.database.transaction(readonly=True) as session:
        retry = session.scalar(select(Delivery).where(Delivery.status == DeliveryStatus.QUEUED))
        assert retry is not None
        assert retry.attempts == 1
        assert retry.not_before > FIXED_NOW
        assert "451" in (retry.last_error or "")
    assert issue_of(app, issue_id).status is IssueStatus.SENDING
    # The relay recovers; the retry goes out when it is due.
    smtp_server.handler.replies.clear()
    later = FIXED_NOW + timedelta(hours=3)
    report = app.sender(app.transport(), clock=lambda: later).deliver(issue_of(app, issue_id))
    assert report.sent == 1 and report.finished
    assert len(smtp_server.messages) == 2


def test_unreachable_relay_stops_and_loses_nothing(
    app_factory: Callable[..., App], database_url: str
) -> None:
    app, _issue_id = edition_app(
        app_factory, database_url, transport="smtp", smtp_host="127.0.0.1", smtp_port=free_port()
    )
    add_readers(app, 3)
    with pytest.raises(TransportError, match="cannot connect to the SMTP relay"):
        app.sending.send(edition_date=EDITION, now=FIXED_NOW)
    with app.database.transaction(readonly=True) as session:
        rows = session.scalars(select(Delivery)).all()
        assert {row.status for row in rows} == {DeliveryStatus.QUEUED}
        assert {row.attempts for row in rows} == {0}
        assert {row.lease_owner for row in rows} == {None}


def test_a_lost_lease_does_not_overwrite_another_workers_row(
    app_factory: Callable[..., App], database_url: str
) -> None:
    app, issue_id = edition_app(app_factory, database_url)
    add_readers(app, 1)
    lease = timedelta(minutes=5)
    with app.database.transaction() as session:
        ledger.enqueue_issue(session, issue_id, now=FIXED_NOW, not_before=FIXED_NOW)
        (claimed,) = ledger.claim_batch(
            session, issue_id, owner="slow", size=1, now=FIXED_NOW, lease=lease
        )
        session.execute(update(Delivery).values(lease_owner="other"))
        ledger.record(
            session,
            [ledger.Recorded(claimed.delivery_id, claimed.subscriber_id, "retry", 1, detail="451")],
            owner="slow",
            now=FIXED_NOW,
            max_attempts=8,
        )
        row = session.get_one(Delivery, claimed.delivery_id)
        session.refresh(row)
        assert (row.status, row.lease_owner) == (DeliveryStatus.SENDING, "other")


def test_folder_transport_replaces_a_resent_message(tmp_path: Path) -> None:
    from newsletter.delivery.transports import Envelope

    transport = FolderTransport(tmp_path / "box")
    envelope = Envelope("digest@example.com", "r@example.com", "<1@example.com>")
    transport.send(envelope, b"Subject: one\r\n\r\nbody\r\n")
    transport.send(envelope, b"Subject: one\r\n\r\nbody\r\n")
    assert len(list((tmp_path / "box" / "new").iterdir())) == 1
    assert list((tmp_path / "box" / "tmp").iterdir()) == []


def test_smtp_transport_reuses_one_connection(smtp_server: SmtpServer) -> None:
    from newsletter.delivery.transports import Envelope

    transport = SmtpTransport(SmtpConfig(host=smtp_server.host, port=smtp_server.port))
    for number in range(4):
        result = transport.send(
            Envelope("digest@example.com", f"r{number}@example.com", f"<{number}@x>"),
            b"Subject: hi\r\n\r\n.a dot line\r\nbody\r\n",
        )
        assert result.outcome.value == "sent"
    assert transport.connections == 1
    transport.close()
    assert len(smtp_server.messages) == 4
    assert (
        b"\r\n.a dot line\r\n" in smtp_server.messages[0].data
    )  # dot-stuffing undone by the server
