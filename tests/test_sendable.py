"""Issue 14: every edition stays sendable, whatever text reached it, on SQLite and PostgreSQL.

A bad value in a stored subject, a subject too long for its column, or one message that cannot be
built or sent never wedges an edition: the delivery concerned is failed with its reason, the edition
can be finished, resumed or rebuilt, and ``issue status`` says what happened.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Callable
from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from newsletter.bootstrap import App
from newsletter.cli import cli
from newsletter.delivery.headers import header_text
from newsletter.models import (
    Delivery,
    DeliveryStatus,
    Issue,
    IssueStatus,
    IssueVariant,
    MarketSnapshot,
)
from subscribers.model import Subscriber
from tests.conftest import FIXED_NOW, SmtpServer
from tests.test_delivery import EDITION, add_readers, edition_app, issue_of, statuses

INJECTED = "BTC\r\nBcc: victim@example.org\n$63,957 (+0.6%) · 8 stories"


def smtp_edition(
    app_factory: Callable[..., App], database_url: str, server: SmtpServer
) -> tuple[App, int]:
    return edition_app(
        app_factory,
        database_url,
        transport="smtp",
        smtp_host=server.host,
        smtp_port=server.port,
    )


def store_subject(app: App, issue_id: int, subject: str) -> None:
    """What an older build (or a bad value that slipped past validation) left in the store."""
    with app.database.transaction() as session:
        session.execute(update(Issue).where(Issue.id == issue_id).values(subject=subject))
        session.execute(
            update(IssueVariant).where(IssueVariant.issue_id == issue_id).values(subject=subject)
        )


def wedge(app: App, issue_id: int) -> None:
    """The state the crash left: edition sending, one delivery sending under a lapsed lease."""
    with app.database.transaction() as session:
        session.execute(
            update(Issue)
            .where(Issue.id == issue_id)
            .values(status=IssueStatus.SENDING, sending_at=FIXED_NOW)
        )
    app.sending.enqueue(edition_date=EDITION, now=FIXED_NOW)
    with app.database.transaction() as session:
        first = session.scalars(
            select(Delivery.id).where(Delivery.issue_id == issue_id).order_by(Delivery.id)
        ).first()
        session.execute(
            update(Delivery)
            .where(Delivery.id == first)
            .values(
                status=DeliveryStatus.SENDING,
                attempts=1,
                lease_owner="crashed-host:4242",
                lease_until=FIXED_NOW - timedelta(minutes=1),
            )
        )


def status_output(app: App) -> str:
    result = CliRunner().invoke(
        cli,
        ["issue", "status", "--date", EDITION.isoformat()],
        env={
            "NEWSLETTER_CONFIG": "examples/demo.toml",
            "NEWSLETTER_DATABASE_URL": app.settings.database_url,
        },
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_header_text_is_one_line_and_capped() -> None:
    assert header_text("BTC\r\nBcc: x@y\t$1\x00\u2028end", limit=300) == "BTC Bcc: x@y $1 end"
    capped = header_text("9" * 455, limit=300)
    assert len(capped) == 300 and capped.endswith("…")
    assert header_text("  \n ", limit=10, fallback="Daily") == "Daily"


def test_a_line_break_stored_in_the_subject_does_not_wedge_the_send(
    app_factory: Callable[..., App], database_url: str, smtp_server: SmtpServer
) -> None:
    app, issue_id = smtp_edition(app_factory, database_url, smtp_server)
    add_readers(app, 3)
    store_subject(app, issue_id, INJECTED)
    outcome = app.sending.send(edition_date=EDITION, now=FIXED_NOW)
    assert outcome.report is not None and outcome.report.sent == 3
    assert issue_of(app, issue_id).status is IssueStatus.SENT
    assert len(smtp_server.messages) == 3
    for received in smtp_server.messages:
        message = email.message_from_bytes(received.data, policy=email.policy.default)
        assert message["Subject"] == "BTC Bcc: victim@example.org $63,957 (+0.6%) · 8 stories"
        assert message["Bcc"] is None
        assert received.recipients == [message["To"].addresses[0].addr_spec]


def test_a_455_character_subject_is_capped_to_its_column_at_build(
    app_factory: Callable[..., App], database_url: str, smtp_server: SmtpServer
) -> None:
    app, issue_id = smtp_edition(app_factory, database_url, smtp_server)
    with app.database.transaction() as session:
        session.execute(update(MarketSnapshot).values(price=1e308))
    # A rebuild on the absurd price (PostgreSQL refused the 455-character subject outright).
    result = app.editions.build(edition_date=EDITION, now=FIXED_NOW)
    assert result.rebuilt and len(result.subject) <= 300
    with app.database.transaction(readonly=True) as session:
        issue = session.get_one(Issue, issue_id)
        assert len(issue.subject) <= 300 and "\n" not in issue.subject
        subjects = session.scalars(select(IssueVariant.subject)).all()
        assert all(subject is None or len(subject) <= 300 for subject in subjects)
    add_readers(app, 1)
    outcome = app.sending.send(edition_date=EDITION, now=FIXED_NOW)
    assert outcome.report is not None and outcome.report.sent == 1


def test_a_long_subject_stored_before_the_cap_is_capped_in_the_mail(
    app_factory: Callable[..., App], sqlite_url: str, smtp_server: SmtpServer
) -> None:
    # Only SQLite can hold it (PostgreSQL enforces VARCHAR(300)).
    app, issue_id = smtp_edition(app_factory, sqlite_url, smtp_server)
    add_readers(app, 1)
    store_subject(app, issue_id, "BTC $" + "9" * 450)
    app.sending.send(edition_date=EDITION, now=FIXED_NOW)
    (received,) = smtp_server.messages
    message = email.message_from_bytes(received.data, policy=email.policy.default)
    assert len(message["Subject"]) <= 300


def test_one_message_that_cannot_be_built_fails_its_delivery_and_the_edition_finishes(
    app_factory: Callable[..., App], database_url: str, smtp_server: SmtpServer
) -> None:
    app, issue_id = smtp_edition(app_factory, database_url, smtp_server)
    ids = add_readers(app, 3)
    # An address stored before today's checks: its domain cannot be written in ASCII (IDNA).
    with app.database.transaction() as session:
        session.execute(
            update(Subscriber)
            .where(Subscriber.id == ids[1])
            .values(email="reader1@" + "ü" * 64 + ".example")
        )
    outcome = app.sending.send(edition_date=EDITION, now=FIXED_NOW)
    assert outcome.report is not None
    assert (outcome.report.sent, outcome.report.failed) == (2, 1)
    assert outcome.report.finished
    assert issue_of(app, issue_id).status is IssueStatus.SENT
    assert len(smtp_server.messages) == 2
    with app.database.transaction(readonly=True) as session:
        failed = session.scalars(
            select(Delivery).where(Delivery.status == DeliveryStatus.FAILED)
        ).one()
        assert failed.subscriber_id == ids[1]
        assert failed.lease_owner is None
        assert "could not be built or sent" in (failed.last_error or "")
        assert "idna" in (failed.last_error or "").lower()
    shown = status_output(app)
    assert "sent" in shown and "1 failed" in shown
    assert "could not be built or sent" in shown


def test_a_wedged_edition_can_be_resumed(
    app_factory: Callable[..., App], database_url: str, smtp_server: SmtpServer
) -> None:
    app, issue_id = smtp_edition(app_factory, database_url, smtp_server)
    add_readers(app, 3)
    store_subject(app, issue_id, INJECTED)
    wedge(app, issue_id)
    shown = status_output(app)
    assert "1 sending" in shown and "1 left in flight" in shown and "--resume" in shown
    outcome = app.sending.send(edition_date=EDITION, now=FIXED_NOW, resume_only=True)
    assert outcome.report is not None and outcome.report.sent == 3
    assert issue_of(app, issue_id).status is IssueStatus.SENT
    assert statuses(app, issue_id)[DeliveryStatus.SENT] == 3


def test_a_wedged_edition_nobody_received_can_be_rebuilt_then_sent(
    app_factory: Callable[..., App], database_url: str, smtp_server: SmtpServer
) -> None:
    app, issue_id = smtp_edition(app_factory, database_url, smtp_server)
    add_readers(app, 2)
    store_subject(app, issue_id, INJECTED)
    wedge(app, issue_id)
    result = app.editions.build(edition_date=EDITION, now=FIXED_NOW + timedelta(minutes=5))
    assert result.rebuilt and "\n" not in result.subject
    assert issue_of(app, issue_id).status is IssueStatus.SENDING
    outcome = app.sending.send(
        edition_date=EDITION, now=FIXED_NOW + timedelta(minutes=6), resume_only=True
    )
    assert outcome.report is not None and outcome.report.sent == 2
    for received in smtp_server.messages:
        message = email.message_from_bytes(received.data, policy=email.policy.default)
        assert message["Subject"] == result.subject


def test_an_edition_someone_received_is_still_never_rebuilt(
    app_factory: Callable[..., App], database_url: str, smtp_server: SmtpServer
) -> None:
    app, issue_id = smtp_edition(app_factory, database_url, smtp_server)
    add_readers(app, 2)
    wedge(app, issue_id)
    with app.database.transaction() as session:
        session.execute(
            update(Delivery)
            .where(Delivery.status == DeliveryStatus.QUEUED)
            .values(status=DeliveryStatus.SENT, sent_at=FIXED_NOW)
        )
    with pytest.raises(Exception, match="cannot be rebuilt"):
        app.editions.build(edition_date=EDITION, now=FIXED_NOW)
