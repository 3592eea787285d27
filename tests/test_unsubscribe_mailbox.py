"""Finding 16: the mailto: of List-Unsubscribe is honoured, from a real Maildir and a real mbox.

Requests are real replies to the mailto: of a sent edition. Each is honoured once, by its token or
by its sender's own address; processed messages are moved away, so a rerun changes nothing. With no
mailbox configured, the header offers only the web link.
"""

from __future__ import annotations

import email
import email.policy
import mailbox
import re
from collections.abc import Callable
from datetime import date
from email.message import EmailMessage
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import select

from newsletter.bootstrap import App
from newsletter.cli import cli
from newsletter.delivery.unsubscribes import process_unsubscribe_mailbox
from newsletter.scheduler import DailyPlan, build_scheduler
from subscribers.model import Subscriber, SubscriberStatus
from subscribers.service import add_subscriber
from tests.conftest import FIXED_NOW

EDITION = date(2026, 11, 24)
MAILTO = re.compile(r"<mailto:([^?>]+)\?subject=([^>]+)>")


def sent_edition(app: App, count: int) -> dict[str, EmailMessage]:
    """Send an edition to reader0…reader{count-1}; return each reader's received message."""
    with app.database.transaction() as session:
        for number in range(count):
            add_subscriber(session, f"reader{number}@example.com", confirmed=True)
    app.sending.send(edition_date=EDITION, now=FIXED_NOW, clock=lambda: FIXED_NOW)
    received: dict[str, EmailMessage] = {}
    outbox = mailbox.Maildir(Path(app.settings.outbox_dir), factory=None, create=False)
    for key in outbox.iterkeys():
        message = email.message_from_bytes(outbox.get_bytes(key), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        received[message["To"].addresses[0].addr_spec] = message
    return received


def mailto_subject(message: EmailMessage) -> str:
    """What a mail client puts in the Subject when the reader clicks the mailto: link."""
    match = MAILTO.search(str(message["List-Unsubscribe"]))
    assert match, message["List-Unsubscribe"]
    assert match.group(1) == "unsubscribe@example.com"
    return match.group(2).replace("%20", " ")


def request(sender: str, subject: str, body: str = "", **headers: str) -> bytes:
    lines = [f"From: {sender}", "To: unsubscribe@example.com", f"Subject: {subject}"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n" + body + "\r\n").encode()


def statuses(app: App) -> dict[str, SubscriberStatus]:
    with app.database.transaction(readonly=True) as session:
        return dict(session.execute(select(Subscriber.email, Subscriber.status)).all())


def test_finding16_requests_in_a_maildir_unsubscribe_by_token_or_own_address_once(
    app_factory: Callable[..., App], database_url: str, tmp_path: Path
) -> None:
    inbox = tmp_path / "unsubscribe"
    app = app_factory(database_url=database_url, unsubscribe_mailbox=inbox)
    received = sent_edition(app, 6)
    box = mailbox.Maildir(inbox, create=True)
    # 0: the mailto: as a mail client sends it, from an alias (the token decides, not the sender).
    box.add(request("Alias <alias@other.example>", mailto_subject(received["reader0@example.com"])))
    # 1: the token pasted in the body of a reply.
    token1 = mailto_subject(received["reader1@example.com"]).split()[1]
    box.add(request("reader1@example.com", "Re: your newsletter", f"Please stop.\r\n{token1}\r\n"))
    # 2: no token: the sender's own address is on the list.
    box.add(request("Reader Two <READER2@example.com>", "stop", "unsubscribe me"))
    # 3: a stranger asks to unsubscribe someone else, by address: nobody leaves.
    box.add(request("stranger@elsewhere.example", "unsubscribe reader3@example.com"))
    # 4: a forged token from a stranger: nobody leaves.
    box.add(request("stranger@elsewhere.example", "unsubscribe MQ.forgedsignature0123456789"))
    # 5: an auto-reply from reader4 is not a request.
    box.add(
        request(
            "reader4@example.com", "Out of office", "back Monday", Auto_Submitted="auto-replied"
        )
    )
    # 6: reader0 asks twice.
    box.add(request("reader0@example.com", mailto_subject(received["reader0@example.com"])))

    summary = process_unsubscribe_mailbox(app.database, app.signer(), inbox, now=FIXED_NOW)
    assert (summary.messages, summary.unsubscribed, summary.already) == (7, 3, 1)
    assert (summary.unknown, summary.not_requests) == (2, 1)
    assert any("stranger@elsewhere.example" in note for note in summary.notes)
    after = statuses(app)
    assert {
        email for email, status in after.items() if status is SubscriberStatus.UNSUBSCRIBED
    } == {
        "reader0@example.com",
        "reader1@example.com",
        "reader2@example.com",
    }
    assert after["reader3@example.com"] is SubscriberStatus.CONFIRMED
    assert after["reader4@example.com"] is SubscriberStatus.CONFIRMED
    with app.database.transaction(readonly=True) as session:
        reader0 = session.scalars(
            select(Subscriber).where(Subscriber.email == "reader0@example.com")
        ).one()
        assert reader0.status_reason == "mailto"

    # Processed messages moved to the .processed folder: a rerun finds nothing and changes nothing.
    assert len(box) == 0
    assert len(box.get_folder("processed")) == 7
    again = process_unsubscribe_mailbox(app.database, app.signer(), inbox, now=FIXED_NOW)
    assert (again.messages, again.unsubscribed) == (0, 0)
    assert statuses(app) == after


def test_finding16_the_command_reads_an_mbox_and_a_rerun_says_nothing_is_new(
    app_factory: Callable[..., App], sqlite_url: str, tmp_path: Path
) -> None:
    mbox_path = tmp_path / "unsubscribe.mbox"
    app = app_factory(database_url=sqlite_url, unsubscribe_mailbox=mbox_path)
    received = sent_edition(app, 3)
    box = mailbox.mbox(mbox_path, create=True)
    box.add(request("someone@else.example", mailto_subject(received["reader1@example.com"])))
    box.add(request("nobody@else.example", "unsubscribe"))
    box.flush()
    env = {
        "NEWSLETTER_CONFIG": "examples/demo.toml",
        "NEWSLETTER_DATABASE_URL": sqlite_url,
        "NEWSLETTER_UNSUBSCRIBE_MAILBOX": str(mbox_path),
    }
    runner = CliRunner()
    result = runner.invoke(cli, ["unsubscribes", "process", str(mbox_path)], env=env)
    assert result.exit_code == 0, result.output
    assert re.search(r"unsubscribed\W+1\b", result.stdout)
    assert re.search(r"naming no subscriber\W+1\b", result.stdout)
    assert "nobody@else.example" in result.stderr
    assert statuses(app)["reader1@example.com"] is SubscriberStatus.UNSUBSCRIBED
    assert len(mailbox.mbox(mbox_path)) == 0
    assert len(mailbox.mbox(tmp_path / "unsubscribe.mbox.processed")) == 2

    rerun = runner.invoke(cli, ["unsubscribes", "process", str(mbox_path)], env=env)
    assert rerun.exit_code == 0, rerun.output
    assert "No new messages" in rerun.stdout
    missing = runner.invoke(cli, ["unsubscribes", "process", str(tmp_path / "nowhere")], env=env)
    assert missing.exit_code == 2
    assert "does not exist" in missing.stderr


def test_finding16_list_unsubscribe_offers_mailto_only_when_its_mailbox_is_read(
    app_factory: Callable[..., App], tmp_path: Path, sqlite_url: str
) -> None:
    plain = app_factory(database_url=sqlite_url, outbox_dir=tmp_path / "plain")
    message = sent_edition(plain, 1)["reader0@example.com"]
    header = str(message["List-Unsubscribe"])
    assert re.fullmatch(
        r"<https://[^>]+/unsubscribe/[^>]+>|<http://[^>]+/unsubscribe/[^>]+>", header
    )
    assert "mailto:" not in header


def test_finding16_newsletter_run_polls_the_unsubscribe_mailbox(
    app_factory: Callable[..., App], sqlite_url: str, tmp_path: Path
) -> None:
    inbox = tmp_path / "unsubscribe"
    app = app_factory(database_url=sqlite_url, unsubscribe_mailbox=inbox)
    received = sent_edition(app, 2)
    mailbox.Maildir(inbox, create=True).add(
        request("x@other.example", mailto_subject(received["reader1@example.com"]))
    )
    plan = DailyPlan(app, clock=lambda: FIXED_NOW)
    scheduler = build_scheduler(plan, blocking=False)
    job = scheduler.get_job("unsubscribes")  # type: ignore[attr-defined]
    assert job is not None and job.func == plan.read_unsubscribes
    job.func()
    assert statuses(app)["reader1@example.com"] is SubscriberStatus.UNSUBSCRIBED

    without = DailyPlan(app_factory(database_url=sqlite_url), clock=lambda: FIXED_NOW)
    assert build_scheduler(without, blocking=False).get_job("unsubscribes") is None  # type: ignore[attr-defined]
