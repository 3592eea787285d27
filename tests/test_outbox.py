"""The outbox of subscription mails: written with the change, sent once, retried, given up with a
reason; a ``newsletter web`` killed after the page answered loses nothing. SQLite and PostgreSQL,
real SMTP (aiosmtpd) and real processes.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from kernel import utcnow
from newsletter.bootstrap import App
from newsletter.cli import cli
from newsletter.db import Database
from newsletter.delivery import outbox, subscription_mails
from newsletter.models import OutboxMail, OutboxStatus
from newsletter.services import subscriptions
from newsletter.services.outbox import Outbox
from subscribers.model import Subscriber
from tests.conftest import EXAMPLES, FIXED_NOW, ROOT, SmtpServer, free_port

SECRET = "outbox-test-" + "s" * 40
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
#: Failure guard only: a mail that has not arrived by then never will.
ARRIVAL_SECONDS = 60.0


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _rows(database: Database) -> list[OutboxMail]:
    with database.transaction(readonly=True) as session:
        rows = list(session.scalars(select(OutboxMail).order_by(OutboxMail.id)))
        session.expunge_all()
        return rows


def _subscribe(app: App, address: str, now: datetime) -> subscriptions.SubscribeOutcome:
    return subscriptions.subscribe(
        app.database,
        settings=app.settings,
        signer=app.signer(),
        mails=subscription_mails.SubscriptionMails(
            settings=app.settings, renderer=app.renderer, signer=app.signer(), clock=lambda: now
        ),
        email=address,
        ip="192.0.2.1",
        user_agent="test",
        timezone="UTC",
        now=now,
    )


@pytest.fixture
def smtp_app(app_factory: Callable[..., App], database_url: str, smtp_server: SmtpServer) -> App:
    return app_factory(
        database_url=database_url,
        transport="smtp",
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
    )


def test_the_mail_is_written_with_the_signup_and_sent_once(
    smtp_app: App, smtp_server: SmtpServer
) -> None:
    done = _subscribe(smtp_app, "ada@example.com", FIXED_NOW)
    assert done.mail is not None
    (row,) = _rows(smtp_app.database)
    assert row.status is OutboxStatus.QUEUED and row.kind == "confirm"
    assert row.message is not None and b"/confirm/" in row.message
    assert smtp_server.messages == []  # written, not sent: no page waits for SMTP

    service = Outbox(smtp_app.database, Clock(FIXED_NOW))
    transport = smtp_app.transport()
    assert service.deliver_due(transport).sent == 1
    assert service.deliver_due(transport).tried == 0  # a second round sends nothing again
    (received,) = smtp_server.messages
    assert received.recipients == ["ada@example.com"]
    assert b"Confirm your subscription" in received.data
    (row,) = _rows(smtp_app.database)
    assert row.status is OutboxStatus.SENT and row.sent_at is not None
    assert row.message is None  # the personal links are not kept once sent


def test_a_refusal_for_now_is_retried_with_backoff_then_given_up_with_its_reason(
    smtp_app: App, smtp_server: SmtpServer
) -> None:
    smtp_server.handler.replies["slow@example.com"] = "451 4.7.1 Try again later"
    _subscribe(smtp_app, "slow@example.com", FIXED_NOW)
    clock = Clock(FIXED_NOW)
    service = Outbox(smtp_app.database, clock, max_attempts=3)
    transport = smtp_app.transport()
    waits = []
    for attempt in (1, 2):
        assert service.deliver_due(transport).retried == 1
        (row,) = _rows(smtp_app.database)
        assert row.status is OutboxStatus.QUEUED and row.attempts == attempt
        assert row.last_error is not None and "451" in row.last_error
        waits.append(row.not_before - clock.now)
        assert service.deliver_due(transport).tried == 0  # not due before its backoff
        clock.now = row.not_before
    # exponential: the second wait's range starts where the first one's ends
    assert timedelta(seconds=15) <= waits[0] <= timedelta(seconds=30) <= waits[1]
    assert service.deliver_due(transport).failed == 1
    (row,) = _rows(smtp_app.database)
    assert row.status is OutboxStatus.FAILED and row.attempts == 3
    assert row.last_error is not None and "451" in row.last_error
    assert row.message is None
    state = service.state()
    assert state.counts["failed"] == 1 and state.failures[0].reason == row.last_error

    # operators see it
    result = CliRunner().invoke(
        cli, ["outbox"], env={"NEWSLETTER_DATABASE_URL": smtp_app.settings.database_url}
    )
    assert result.exit_code == 0, result.output
    assert "failed: 1" in result.output and "451" in result.output
    assert "slow@example.com" in result.output


def test_prune_deletes_only_finished_mails_older_than_the_cut_off(
    smtp_app: App, smtp_server: SmtpServer
) -> None:
    now = utcnow()
    old, recent = now - timedelta(days=40), now - timedelta(days=1)
    transport = smtp_app.transport()
    smtp_server.handler.replies["gone@example.com"] = "550 5.1.1 No such user"
    _subscribe(smtp_app, "sent-long-ago@example.com", old)
    _subscribe(smtp_app, "gone@example.com", old)
    Outbox(smtp_app.database, Clock(old)).deliver_due(transport)  # one sent, one given up
    _subscribe(smtp_app, "sent-lately@example.com", recent)
    Outbox(smtp_app.database, Clock(recent)).deliver_due(transport)
    _subscribe(smtp_app, "still-waiting@example.com", old)  # queued since long ago: never pruned
    statuses = {row.recipient: row.status for row in _rows(smtp_app.database)}
    assert statuses == {
        "sent-long-ago@example.com": OutboxStatus.SENT,
        "gone@example.com": OutboxStatus.FAILED,
        "sent-lately@example.com": OutboxStatus.SENT,
        "still-waiting@example.com": OutboxStatus.QUEUED,
    }
    env = {"NEWSLETTER_DATABASE_URL": smtp_app.settings.database_url}

    dry = CliRunner().invoke(cli, ["outbox", "prune", "--older-than", "30", "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    assert "2 subscription mails" in dry.output and "would be pruned" in dry.output
    assert len(_rows(smtp_app.database)) == 4

    done = CliRunner().invoke(cli, ["outbox", "prune", "--older-than", "30"], env=env)
    assert done.exit_code == 0, done.output
    assert "Pruned 2 subscription mails" in done.output
    assert {row.recipient for row in _rows(smtp_app.database)} == {
        "sent-lately@example.com",
        "still-waiting@example.com",
    }

    refused = CliRunner().invoke(cli, ["outbox", "prune", "--older-than", "0"], env=env)
    assert refused.exit_code != 0 and "at least 1 day" in refused.output


def test_a_permanent_refusal_is_given_up_at_once(smtp_app: App, smtp_server: SmtpServer) -> None:
    smtp_server.handler.replies["gone@example.com"] = "550 5.1.1 No such user"
    _subscribe(smtp_app, "gone@example.com", FIXED_NOW)
    service = Outbox(smtp_app.database, Clock(FIXED_NOW))
    assert service.deliver_due(smtp_app.transport()).failed == 1
    (row,) = _rows(smtp_app.database)
    assert row.status is OutboxStatus.FAILED and row.attempts == 1
    assert row.last_error is not None and "550" in row.last_error


def test_a_mail_whose_sender_died_is_sent_after_the_lease(
    smtp_app: App, smtp_server: SmtpServer
) -> None:
    _subscribe(smtp_app, "ada@example.com", FIXED_NOW)
    lease = timedelta(seconds=120)
    with smtp_app.database.transaction() as session:  # a process claims it, then dies
        assert len(outbox.claim(session, now=FIXED_NOW, lease=lease, limit=10)) == 1
    clock = Clock(FIXED_NOW + timedelta(seconds=60))
    service = Outbox(smtp_app.database, clock, lease=lease)
    transport = smtp_app.transport()
    assert service.deliver_due(transport).tried == 0  # still leased
    clock.now = FIXED_NOW + lease + timedelta(seconds=1)
    assert service.deliver_due(transport).sent == 1
    assert len(smtp_server.messages) == 1


def test_erasing_a_subscriber_removes_their_mails(smtp_app: App) -> None:
    from newsletter.services import privacy

    _subscribe(smtp_app, "ada@example.com", FIXED_NOW)
    privacy.erase_address(smtp_app.database, "ada@example.com", now=FIXED_NOW)
    assert _rows(smtp_app.database) == []


# a real `newsletter web`, killed after the page answered


class HangingRelay:
    """Accepts TCP connections and never says a word: SMTP clients wait for the greeting."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0), backlog=16)
        self.port: int = self.socket.getsockname()[1]

    def close(self) -> None:
        self.socket.close()


@pytest.fixture
def hanging_relay() -> Iterator[HangingRelay]:
    relay = HangingRelay()
    try:
        yield relay
    finally:
        relay.close()


def _web(database_url: str, port: int, smtp_port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("NEWSLETTER_")}
    env |= {
        "NEWSLETTER_CONFIG": str(EXAMPLES / "demo.toml"),
        "NEWSLETTER_DATABASE_URL": database_url,
        "NEWSLETTER_TRANSPORT": "smtp",
        "NEWSLETTER_SMTP_HOST": "127.0.0.1",
        "NEWSLETTER_SMTP_PORT": str(smtp_port),
        "NEWSLETTER_SMTP_TIMEOUT": "600",
        "NEWSLETTER_OUTBOX_LEASE_SECONDS": "1",
        "NEWSLETTER_SECRET_KEY": SECRET,
        "NEWSLETTER_BASE_URL": f"http://127.0.0.1:{port}",
        "PYTHONUNBUFFERED": "1",
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "newsletter", "web", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _wait_until_serving(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"newsletter web did not start:\n{log.read_text()}")
        time.sleep(0.1)


@pytest.mark.slow
def test_a_web_killed_after_the_page_answered_sends_the_mail_once_on_restart(
    database_url: str, smtp_server: SmtpServer, hanging_relay: HangingRelay, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "web.log"
    first = _web(database_url, port, hanging_relay.port, log)
    try:
        _wait_until_serving(first, url, log)
        with httpx.Client(base_url=url, timeout=30) as http:
            token = CSRF.search(http.get("/").text)
            assert token is not None
            # The relay never answers: the page answers all the same.
            answer = http.post(
                "/subscribe", data={"email": "ada@example.com", "csrf_token": token.group(1)}
            )
        assert answer.status_code == 303, answer.text
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    database = Database.from_url(database_url)
    try:
        (row,) = _rows(database)
        assert row.status in (OutboxStatus.QUEUED, OutboxStatus.SENDING)
        assert smtp_server.messages == []

        second = _web(database_url, port, smtp_server.port, log)
        try:
            _wait_until_serving(second, url, log)
            deadline = time.monotonic() + ARRIVAL_SECONDS
            while not smtp_server.messages and time.monotonic() < deadline:
                time.sleep(0.1)
            assert smtp_server.messages, log.read_text()
            # a few more of the web's delivery rounds: nothing is sent again
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            second.send_signal(signal.SIGTERM)
            try:
                second.wait(timeout=30)
            except subprocess.TimeoutExpired:
                second.kill()
                second.wait()
        (received,) = smtp_server.messages
        assert received.recipients == ["ada@example.com"]
        assert b"Confirm your subscription" in received.data
        (row,) = _rows(database)
        assert row.status is OutboxStatus.SENT
        with database.transaction(readonly=True) as session:
            subscriber = session.scalar(select(Subscriber))
            assert subscriber is not None and subscriber.email == "ada@example.com"
    finally:
        database.dispose()


def test_the_worker_delivers_the_outbox(smtp_app: App, smtp_server: SmtpServer) -> None:
    import threading

    _subscribe(smtp_app, "ada@example.com", utcnow())
    smtp_app.worker.run(stop=threading.Event(), exit_when_idle=True, poll_seconds=0.1)
    assert len(smtp_server.messages) == 1
    (row,) = _rows(smtp_app.database)
    assert row.status is OutboxStatus.SENT
