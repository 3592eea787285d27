"""Bounce and complaint reports from a Maildir or an mbox suppress the right addresses, once."""

from __future__ import annotations

import mailbox
from collections.abc import Callable
from datetime import date
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import func, select

from newsletter.bootstrap import App
from newsletter.cli import cli
from newsletter.delivery.bounces import parse_report, process_mailbox
from newsletter.models import Bounce, BounceKind, Delivery, DeliveryStatus
from subscribers.model import Subscriber, SubscriberStatus
from subscribers.service import add_subscriber
from tests.conftest import FIXED_NOW

EDITION = date(2026, 11, 24)


def dsn(
    report_id: str, recipient: str, *, action: str, status: str, original_id: str = "<x@y>"
) -> bytes:
    return (
        f"From: MAILER-DAEMON@mx.example.org\r\nTo: bounces@example.com\r\nSubject: Undelivered Mail\r\n"
        f"Message-ID: {report_id}\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.org\r\nArrival-Date: Tue, 24 Nov 2026 07:01:00 +0000\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: {action}\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; {status.replace('.', '')[:3]} {status} mailbox problem\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: digest@example.com\r\nTo: {recipient}\r\nMessage-ID: {original_id}\r\nSubject: BTC\r\n"
        "--B--\r\n"
    ).encode()


def complaint(report_id: str, recipient: str) -> bytes:
    return (
        f"From: fbl@isp.example.net\r\nTo: abuse@example.com\r\nMessage-ID: {report_id}\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="F"\r\n\r\n'
        "--F\r\nContent-Type: text/plain\r\n\r\nThis is an abuse report.\r\n"
        "--F\r\nContent-Type: message/feedback-report\r\n\r\n"
        f"Feedback-Type: abuse\r\nUser-Agent: isp/1.0\r\nVersion: 1\r\nOriginal-Rcpt-To: {recipient}\r\n"
        "--F\r\nContent-Type: message/rfc822\r\n\r\n"
        f"From: digest@example.com\r\nTo: {recipient}\r\nSubject: BTC\r\n\r\nbody\r\n"
        "--F--\r\n"
    ).encode()


def test_a_hard_bounce_names_its_recipient_and_original_message() -> None:
    [report] = parse_report(
        dsn("<r1@mx>", "gone@example.org", action="failed", status="5.1.1", original_id="<m1@e>")
    )
    assert (report.recipient, report.kind, report.status) == (
        "gone@example.org",
        BounceKind.HARD,
        "5.1.1",
    )
    assert report.original_message_id == "<m1@e>"
    assert "mailbox problem" in (report.diagnostic or "")


def test_delayed_and_4xx_are_soft_and_other_mail_is_ignored() -> None:
    [delayed] = parse_report(dsn("<r2@mx>", "slow@example.org", action="delayed", status="4.4.7"))
    assert delayed.kind is BounceKind.SOFT
    [temporary] = parse_report(dsn("<r3@mx>", "full@example.org", action="failed", status="4.2.2"))
    assert temporary.kind is BounceKind.SOFT
    assert parse_report(b"From: a@b\r\nSubject: out of office\r\n\r\nI am away.\r\n") == []
    assert parse_report(b"\x00\xffnot mail at all") == []


def test_a_feedback_report_is_a_complaint() -> None:
    [report] = parse_report(complaint("<c1@isp>", "angry@example.net"))
    assert (report.recipient, report.kind) == ("angry@example.net", BounceKind.COMPLAINT)


def test_mailbox_processing_suppresses_hard_bounces_once(
    app_factory: Callable[..., App], database_url: str, tmp_path: Path
) -> None:
    app = app_factory(database_url=database_url)
    app.sources.fetch(now=FIXED_NOW)
    with app.database.transaction() as session:
        for name in ("gone", "slow", "angry", "fine"):
            add_subscriber(session, f"{name}@example.org", confirmed=True)
    app.sending.send(edition_date=EDITION, now=FIXED_NOW, clock=lambda: FIXED_NOW)
    with app.database.transaction(readonly=True) as session:
        gone_id = session.scalars(
            select(Subscriber.id).where(Subscriber.email == "gone@example.org")
        ).one()
        message_id = session.scalars(
            select(Delivery.message_id).where(Delivery.subscriber_id == gone_id)
        ).one()
    assert message_id is not None

    box = mailbox.Maildir(tmp_path / "bounces", create=True)
    box.add(
        dsn("<r1@mx>", "GONE@example.org", action="failed", status="5.1.1", original_id=message_id)
    )
    box.add(dsn("<r2@mx>", "slow@example.org", action="delayed", status="4.4.7"))
    box.add(complaint("<c1@isp>", "angry@example.org"))
    box.add(dsn("<r4@mx>", "stranger@example.org", action="failed", status="5.1.1"))
    box.add(b"From: someone@example.org\r\nSubject: hello\r\n\r\nnot a report\r\n")

    summary = process_mailbox(app.database, tmp_path / "bounces", now=FIXED_NOW)
    assert (summary.hard, summary.soft, summary.complaints, summary.suppressed) == (2, 1, 1, 2)
    assert (summary.unknown, summary.not_reports) == (1, 1)
    with app.database.transaction(readonly=True) as session:
        states = dict(session.execute(select(Subscriber.email, Subscriber.status)).all())
        bounced = session.scalars(select(Delivery).where(Delivery.subscriber_id == gone_id)).one()
        assert session.scalar(select(func.count()).select_from(Bounce)) == 4
    assert states["gone@example.org"] is SubscriberStatus.BOUNCED
    assert states["angry@example.org"] is SubscriberStatus.COMPLAINED
    assert states["slow@example.org"] is SubscriberStatus.CONFIRMED
    assert states["fine@example.org"] is SubscriberStatus.CONFIRMED
    assert bounced.status is DeliveryStatus.FAILED
    assert "bounced after acceptance" in (bounced.last_error or "")

    again = process_mailbox(app.database, tmp_path / "bounces", now=FIXED_NOW)
    assert (again.already_seen, again.suppressed) == (4, 0)


def test_bounces_command_reads_an_mbox(
    make_settings: Callable[..., object], sqlite_url: str, tmp_path: Path
) -> None:
    env = {"NEWSLETTER_CONFIG": "examples/demo.toml", "NEWSLETTER_DATABASE_URL": sqlite_url}
    runner = CliRunner()
    assert (
        runner.invoke(
            cli, ["subscribers", "add", "gone@example.org", "--confirmed"], env=env
        ).exit_code
        == 0
    )
    box = mailbox.mbox(tmp_path / "bounces.mbox", create=True)
    box.add(dsn("<r1@mx>", "gone@example.org", action="failed", status="5.1.1"))
    box.flush()
    result = runner.invoke(cli, ["bounces", "process", str(tmp_path / "bounces.mbox")], env=env)
    assert result.exit_code == 0, result.output
    assert "addresses suppressed" in result.stdout
    listed = runner.invoke(cli, ["subscribers", "list"], env=env).stdout
    assert "gone@example.org\tbounced" in listed
    missing = runner.invoke(cli, ["bounces", "process", str(tmp_path / "nowhere")], env=env)
    assert missing.exit_code == 2
    assert "does not exist" in missing.stderr
