"""Several SMTP relays with failover: one down or answering 421, the send goes on through the other.

Real relays on loopback (aiosmtpd), a real closed port for a relay that is down, both databases; the
counts per relay are read back the way an operator reads them (``issue status``, ``/metrics``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from click.testing import CliRunner
from sqlalchemy import func, select

from newsletter.bootstrap import App
from newsletter.cli import cli
from newsletter.config import load_settings
from newsletter.db import Database
from newsletter.delivery.relays import FailoverTransport, Relay, relay_counts
from newsletter.delivery.smtp import SmtpConfig, SmtpTransport
from newsletter.delivery.transports import Envelope, Outcome
from newsletter.errors import ConfigError, TransportError
from newsletter.models import Delivery, DeliveryStatus
from subscribers.service import add_subscriber
from tests.conftest import FIXED_NOW, free_port
from tests.web_fixtures import Web, web_factory

__all__ = ["web_factory"]

EDITION = date(2026, 11, 24)
READERS = 12


@dataclass
class Relaying:
    """A relay that accepts everything, or answers ``refuse`` (e.g. a 421) to every MAIL FROM."""

    refuse: str | None = None
    rcpt: dict[str, str] = field(default_factory=dict)
    received: list[str] = field(default_factory=list)

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.refuse:
            return self.refuse
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address in self.rcpt:
            return self.rcpt[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.extend(envelope.rcpt_tos)
        return "250 Queued"


@dataclass
class RunningRelay:
    handler: Relaying
    port: int

    @property
    def name(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture
def start_relay() -> Iterator[Callable[..., RunningRelay]]:
    controllers: list[Controller] = []

    def start(refuse: str | None = None) -> RunningRelay:
        handler = Relaying(refuse=refuse)
        port = free_port()
        controller = Controller(handler, hostname="127.0.0.1", port=port, decode_data=False)
        controller.start()
        controllers.append(controller)
        return RunningRelay(handler, port)

    yield start
    for controller in controllers:
        controller.stop()


def relay_table(port: int, priority: int) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": port, "priority": priority, "timeout": 2.0}


def send_edition(app: App) -> None:
    app.sources.fetch(now=FIXED_NOW)
    with app.database.transaction() as session:
        for number in range(READERS):
            add_subscriber(session, f"reader{number}@example.org", confirmed=True)
    app.sending.send(edition_date=EDITION, now=FIXED_NOW, clock=lambda: FIXED_NOW)


def delivered(app: App) -> dict[str, int]:
    with app.database.transaction(readonly=True) as session:
        rows = session.execute(
            select(Delivery.status, func.count()).group_by(Delivery.status)
        ).all()
    return {DeliveryStatus(status).value: count for status, count in rows}


def counts_of(database: Database) -> dict[str, dict[str, int]]:
    with database.transaction(readonly=True) as session:
        return relay_counts(session)


def counts(app: App) -> dict[str, dict[str, int]]:
    return counts_of(app.database)


def test_a_relay_that_is_down_is_skipped_and_the_send_completes_through_the_next(
    app_factory: Callable[..., App],
    database_url: str,
    start_relay: Callable[..., RunningRelay],
) -> None:
    down = free_port()  # nothing listens there: connection refused
    backup = start_relay()
    app = app_factory(
        database_url=database_url,
        transport="smtp",
        relays=[relay_table(backup.port, 10), relay_table(down, 0)],
    )
    send_edition(app)
    assert delivered(app) == {"sent": READERS}
    assert sorted(backup.handler.received) == sorted(
        f"reader{n}@example.org" for n in range(READERS)
    )
    assert counts(app) == {
        f"127.0.0.1:{down}": {"sent": 0, "deferred": 0, "failed": 0, "skipped": READERS},
        backup.name: {"sent": READERS, "deferred": 0, "failed": 0, "skipped": 0},
    }


def test_a_relay_answering_421_is_skipped_and_the_counts_show_everywhere(
    web_factory: Callable[..., Web],
    database_url: str,
    start_relay: Callable[..., RunningRelay],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    busy = start_relay(refuse="421 4.7.0 Too many connections, closing")
    backup = start_relay()
    web = web_factory(
        database_url,
        transport="smtp",
        relays=[relay_table(busy.port, 0), relay_table(backup.port, 5)],
    )
    app = web.app
    send_edition(app)
    assert delivered(app) == {"sent": READERS}
    assert busy.handler.received == []
    assert len(backup.handler.received) == READERS
    expected = {
        busy.name: {"sent": 0, "deferred": 0, "failed": 0, "skipped": READERS},
        backup.name: {"sent": READERS, "deferred": 0, "failed": 0, "skipped": 0},
    }
    assert counts(app) == expected

    # /metrics reads them from the database, whichever process sent
    scrape = web.client.get("/metrics").text
    assert (
        f'newsletter_relay_messages{{outcome="sent",relay="{backup.name}"}} {READERS}.0' in scrape
    )
    assert (
        f'newsletter_relay_messages{{outcome="skipped",relay="{busy.name}"}} {READERS}.0' in scrape
    )

    # and so does `newsletter issue status`, in another process's settings
    monkeypatch.setenv("NEWSLETTER_CONFIG", "examples/demo.toml")
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", database_url)
    result = CliRunner().invoke(
        cli, ["issue", "status", "--date", EDITION.isoformat()], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert f"{backup.name}: {READERS} sent, 0 deferred, 0 failed, 0 skipped" in result.output
    assert f"{busy.name}: 0 sent, 0 deferred, 0 failed, {READERS} skipped" in result.output


def test_a_relay_refusing_the_sender_is_passed_over_but_a_recipient_refusal_is_final(
    app_factory: Callable[..., App],
    sqlite_url: str,
    start_relay: Callable[..., RunningRelay],
) -> None:
    refusing = start_relay(refuse="550 5.7.1 sender not allowed here")
    primary = start_relay()
    primary.handler.rcpt = {
        "gone@example.org": "550 5.1.1 no such user",
        "full@example.org": "452 4.2.2 mailbox full",
    }
    backup = start_relay()
    database = app_factory(database_url=sqlite_url).database
    transport = FailoverTransport(
        [
            Relay(name, priority, SmtpTransport(SmtpConfig("127.0.0.1", port)))
            for name, priority, port in (
                (refusing.name, 0, refusing.port),
                (primary.name, 1, primary.port),
                (backup.name, 2, backup.port),
            )
        ],
        cooldown=60,
        database=database,
    )
    message = b"From: digest@example.com\r\nSubject: x\r\n\r\nx\r\n"

    def send(recipient: str) -> Outcome:
        envelope = Envelope("digest@example.com", recipient, f"<{recipient}>")
        return transport.send(envelope, message).outcome

    assert send("reader@example.org") is Outcome.SENT
    assert send("gone@example.org") is Outcome.FAILED
    assert send("full@example.org") is Outcome.RETRY
    transport.close()  # writes the counts
    assert primary.handler.received == ["reader@example.org"]
    assert backup.handler.received == []
    assert counts_of(database) == {
        refusing.name: {"sent": 0, "deferred": 0, "failed": 0, "skipped": 3},
        primary.name: {"sent": 1, "deferred": 1, "failed": 1, "skipped": 0},
    }


def test_a_cooled_down_relay_is_tried_again(start_relay: Callable[..., RunningRelay]) -> None:
    primary = start_relay(refuse="421 4.3.2 try later")
    backup = start_relay()
    now = [0.0]
    transport = FailoverTransport(
        [
            Relay(primary.name, 0, SmtpTransport(SmtpConfig("127.0.0.1", primary.port))),
            Relay(backup.name, 1, SmtpTransport(SmtpConfig("127.0.0.1", backup.port))),
        ],
        cooldown=30,
        monotonic=lambda: now[0],
    )
    message = b"From: digest@example.com\r\nSubject: x\r\n\r\nx\r\n"

    def send(number: int) -> Outcome:
        envelope = Envelope("digest@example.com", f"r{number}@example.org", f"<{number}@x>")
        return transport.send(envelope, message).outcome

    assert send(1) is Outcome.SENT  # through the backup
    assert transport.cooling() == [primary.name]
    primary.handler.refuse = None  # the primary recovers
    now[0] = 10.0
    assert send(2) is Outcome.SENT  # still cooling: the backup again
    now[0] = 31.0
    assert send(3) is Outcome.SENT  # cooled down: the primary takes it
    assert primary.handler.received == ["r3@example.org"]
    assert backup.handler.received == ["r1@example.org", "r2@example.org"]
    assert transport.tally.take() == {
        primary.name: {"sent": 1, "deferred": 0, "failed": 0, "skipped": 2},
        backup.name: {"sent": 2, "deferred": 0, "failed": 0, "skipped": 0},
    }
    transport.close()


def test_every_relay_down_stops_the_send_and_loses_nothing(
    app_factory: Callable[..., App], sqlite_url: str
) -> None:
    app = app_factory(
        database_url=sqlite_url,
        transport="smtp",
        relays=[relay_table(free_port(), 0), relay_table(free_port(), 1)],
    )
    with pytest.raises(TransportError, match="cannot connect"):
        send_edition(app)
    assert delivered(app) == {"queued": READERS}


def test_relays_in_the_toml_file_with_the_password_from_the_environment(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    app_factory: Callable[..., App],
    sqlite_url: str,
) -> None:
    config = tmp_path / "relays.toml"
    config.write_text(
        """
transport = "smtp"
relay_cooldown_seconds = 45

[[relays]]
host = "smtp.backup.example"
port = 465
tls = "ssl"
priority = 10
username = "news"
password_env = "BACKUP_SMTP_PASSWORD"
max_connections = 2

[[relays]]
host = "smtp.primary.example"
port = 587
tls = "starttls"
""",
        encoding="utf-8",
    )
    settings = load_settings(config)
    assert settings.relay_cooldown_seconds == 45
    assert [(r.host, r.priority, r.max_connections) for r in settings.relays] == [
        ("smtp.backup.example", 10, 2),
        ("smtp.primary.example", 0, 4),
    ]
    app = app_factory(database_url=sqlite_url, transport="smtp", relays=settings.relays)
    with pytest.raises(ConfigError, match="BACKUP_SMTP_PASSWORD"):
        app.transport()
    monkeypatch.setenv("BACKUP_SMTP_PASSWORD", "s3cret")
    transport = app.relays()
    assert [relay.name for relay in transport.relays] == [
        "smtp.primary.example:587",
        "smtp.backup.example:465",
    ]
    backup = transport.relays[1].transport
    assert isinstance(backup, SmtpTransport)
    assert backup.config.password == "s3cret" and backup.config.tls == "ssl"
    assert transport.concurrency == 4


def test_counts_are_written_while_the_transport_stays_open(
    app_factory: Callable[..., App],
    database_url: str,
    start_relay: Callable[..., RunningRelay],
) -> None:
    """A worker keeps its transport open for days: its counts land without a close."""
    relay = start_relay()
    database = app_factory(database_url=database_url).database
    transport = FailoverTransport(
        [Relay(relay.name, 0, SmtpTransport(SmtpConfig("127.0.0.1", relay.port)))],
        cooldown=60,
        database=database,
        flush_seconds=0.1,
    )
    message = b"From: digest@example.com\r\nSubject: x\r\n\r\nx\r\n"
    for number in range(3):
        envelope = Envelope("digest@example.com", f"r{number}@example.org", f"<{number}@x>")
        assert transport.send(envelope, message).outcome is Outcome.SENT
    written: dict[str, dict[str, int]] = {}
    for _ in range(200):
        written = counts_of(database)
        if written:
            break
        threading.Event().wait(0.05)
    assert written == {relay.name: {"sent": 3, "deferred": 0, "failed": 0, "skipped": 0}}
    transport.close()
    assert counts_of(database) == written  # nothing counted twice


def test_when_every_relay_answers_421_the_message_is_deferred_and_retried_later(
    start_relay: Callable[..., RunningRelay],
) -> None:
    first = start_relay(refuse="421 4.7.0 closing")
    second = start_relay(refuse="421 4.7.0 closing too")
    transport = FailoverTransport(
        [
            Relay(first.name, 0, SmtpTransport(SmtpConfig("127.0.0.1", first.port))),
            Relay(second.name, 1, SmtpTransport(SmtpConfig("127.0.0.1", second.port))),
        ],
        cooldown=60,
    )
    envelope = Envelope("digest@example.com", "reader@example.org", "<1@x>")
    result = transport.send(envelope, b"From: digest@example.com\r\n\r\nx\r\n")
    assert (result.outcome, result.code) == (Outcome.RETRY, 421)
    assert transport.tally.take() == {
        first.name: {"sent": 0, "deferred": 0, "failed": 0, "skipped": 1},
        second.name: {"sent": 0, "deferred": 1, "failed": 0, "skipped": 0},
    }
    transport.close()
