"""Issue 11, evaluation of flufl.bounce: bounces that are not clean RFC 3464 reports are read too.

Many mail servers answer with a plain-text bounce (qmail, Exim, old Sendmail, webmail providers) or
with a DSN that bends the RFC (a free-text ``Action``, no report type). Our own parser found the
recipient of 9 of the 117 real bounces that GNU Mailman's flufl.bounce keeps as its test corpus,
flufl.bounce found 112; the messages below are written after those public formats.
"""

from __future__ import annotations

import mailbox
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select

from newsletter.bootstrap import App
from newsletter.delivery.bounces import parse_report, process_mailbox
from newsletter.models import Bounce, BounceKind
from subscribers.model import Subscriber, SubscriberStatus
from subscribers.service import add_subscriber
from tests.conftest import FIXED_NOW

QMAIL = (
    b"Return-Path: <>\r\nFrom: MAILER-DAEMON@mx.example.net\r\nTo: bounces@example.com\r\n"
    b"Subject: failure notice\r\nMessage-ID: <q1@mx.example.net>\r\n\r\n"
    b"Hi. This is the qmail-send program at mx.example.net.\r\n"
    b"I'm afraid I wasn't able to deliver your message to the following addresses.\r\n"
    b"This is a permanent error; I've given up. Sorry it didn't work out.\r\n\r\n"
    b"<gone@example.net>:\r\nSorry, no mailbox here by that name. (#5.1.1)\r\n\r\n"
    b"--- Below this line is a copy of the message.\r\n\r\n"
    b"From: digest@example.com\r\nTo: gone@example.net\r\nSubject: BTC\r\n"
)

EXIM = (
    b"From: Mail Delivery System <Mailer-Daemon@mx.example.org>\r\nTo: bounces@example.com\r\n"
    b"Subject: Mail delivery failed: returning message to sender\r\n"
    b"Message-ID: <e1@mx.example.org>\r\n\r\n"
    b"This message was created automatically by mail delivery software.\r\n\r\n"
    b"A message that you sent could not be delivered to one or more of its\r\n"
    b"recipients. This is a permanent error. The following address(es) failed:\r\n\r\n"
    b"  left@example.org\r\n"
    b"    SMTP error from remote mail server after RCPT TO:<left@example.org>:\r\n"
    b"    550 5.1.1 User unknown\r\n\r\n"
    b"------ This is a copy of the message, including all the headers. ------\r\n\r\n"
    b"From: digest@example.com\r\nTo: left@example.org\r\nSubject: BTC\r\n"
)


def loose_dsn(*, action: str, original: str | None, final: str) -> bytes:
    """A DSN as some servers write it: a free-text Action, or a rewritten Final-Recipient."""
    original_line = f"Original-Recipient: rfc822;{original}\r\n" if original else ""
    return (
        "From: postmaster@mx.example.be\r\nTo: bounces@example.com\r\n"
        "Subject: Delivery Status Notification (Failure)\r\nMessage-ID: <d1@mx.example.be>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="D"\r\n\r\n'
        "--D\r\nContent-Type: text/plain\r\n\r\nThe message could not be delivered.\r\n"
        "--D\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.be\r\n\r\n"
        f"{original_line}Final-Recipient: rfc822;{final}\r\nAction: {action}\r\n"
        "Status: 5.1.1\r\n"
        "--D--\r\n"
    ).encode()


def test_flufl_finding_a_qmail_bounce_is_a_hard_bounce() -> None:
    [report] = parse_report(QMAIL)
    assert (report.recipient, report.kind) == ("gone@example.net", BounceKind.HARD)
    assert report.report_id == "<q1@mx.example.net>"


def test_flufl_finding_an_exim_bounce_is_a_hard_bounce() -> None:
    [report] = parse_report(EXIM)
    assert (report.recipient, report.kind) == ("left@example.org", BounceKind.HARD)


def test_flufl_finding_a_free_text_action_is_still_a_failure() -> None:
    [report] = parse_report(
        loose_dsn(action="failed (Bad destination mailbox address)", original=None, final="x@e.jp")
    )
    assert (report.recipient, report.kind, report.status) == ("x@e.jp", BounceKind.HARD, "5.1.1")


def test_flufl_finding_a_dsn_names_the_address_we_sent_to_not_the_rewritten_one() -> None:
    [report] = parse_report(
        loose_dsn(action="failed", original="reader@example.com", final="reader@ms-daemon")
    )
    assert (report.recipient, report.kind) == ("reader@example.com", BounceKind.HARD)


def test_flufl_finding_an_auto_reply_is_not_a_bounce() -> None:
    vacation = (
        b"From: reader@example.com\r\nTo: digest@example.com\r\nSubject: Out of office\r\n"
        b"Auto-Submitted: auto-replied\r\n\r\n"
        b"I am away until Monday and will read your message when I am back.\r\n"
    )
    assert parse_report(vacation) == []


def test_flufl_finding_a_plain_text_bounce_in_the_mailbox_suppresses_once(
    app_factory: Callable[..., App], database_url: str, tmp_path: Path
) -> None:
    app = app_factory(database_url=database_url)
    with app.database.transaction() as session:
        for email in ("gone@example.net", "left@example.org", "fine@example.org"):
            add_subscriber(session, email, confirmed=True)
    box = mailbox.mbox(tmp_path / "bounces.mbox", create=True)
    box.add(QMAIL)
    box.add(EXIM)
    box.flush()
    summary = process_mailbox(app.database, tmp_path / "bounces.mbox", now=FIXED_NOW)
    assert (summary.hard, summary.suppressed, summary.not_reports) == (2, 2, 0)
    with app.database.transaction(readonly=True) as session:
        states = dict(session.execute(select(Subscriber.email, Subscriber.status)).all())
        kept = session.scalars(select(Bounce.recipient).order_by(Bounce.recipient)).all()
    assert states["gone@example.net"] is SubscriberStatus.BOUNCED
    assert states["left@example.org"] is SubscriberStatus.BOUNCED
    assert states["fine@example.org"] is SubscriberStatus.CONFIRMED
    assert kept == ["gone@example.net", "left@example.org"]
    again = process_mailbox(app.database, tmp_path / "bounces.mbox", now=FIXED_NOW)
    assert (again.already_seen, again.suppressed) == (2, 0)
