"""Every SMTP failure ends in the state the README's "Delivery" table gives, against a real scripted SMTP server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from newsletter.bootstrap import App
from newsletter.models import Delivery, DeliveryStatus, Issue, IssueStatus, RouteRate
from subscribers.model import Subscriber, SubscriberStatus
from subscribers.service import add_subscriber
from tests.conftest import FIXED_NOW, free_port

EDITION = date(2026, 11, 24)
VICTIM = "victim@example.org"


@dataclass
class ScriptedHandler:
    """Answers as told for one recipient: at RCPT, at the end of DATA, by hanging up or stalling."""

    rcpt: dict[str, str] = field(default_factory=dict)
    data: dict[str, str] = field(default_factory=dict)
    hang_up: set[str] = field(default_factory=set)
    stall: dict[str, float] = field(default_factory=dict)
    received: list[tuple[str, bytes]] = field(default_factory=list)
    sessions: int = 0

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        self.sessions += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address in self.rcpt:
            return self.rcpt[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        recipient = envelope.rcpt_tos[0]
        if recipient in self.hang_up:
            server.transport.close()
            return "421 closing"
        if recipient in self.stall:
            await asyncio.sleep(self.stall[recipient])
        if recipient in self.data:
            return self.data[recipient]
        self.received.append((recipient, envelope.original_content))
        return "250 Queued"


@pytest.fixture
def relay() -> Iterator[tuple[ScriptedHandler, int]]:
    handler = ScriptedHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, decode_data=False)
    controller.start()
    yield handler, port
    controller.stop()


def edition(app_factory: Callable[..., App], database_url: str, port: int, **overrides: Any) -> App:
    app = app_factory(
        database_url=database_url,
        transport="smtp",
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_timeout=1.0,
        smtp_pool_size=1,
        **overrides,
    )
    app.sources.fetch(now=FIXED_NOW)
    app.editions.build(edition_date=EDITION, now=FIXED_NOW)
    with app.database.transaction() as session:
        add_subscriber(session, VICTIM, confirmed=True)
        for number in range(3):
            add_subscriber(session, f"reader{number}@example.com", confirmed=True)
    return app


def victim_row(app: App) -> tuple[Delivery, Subscriber]:
    with app.database.transaction(readonly=True) as session:
        subscriber = session.scalars(select(Subscriber).where(Subscriber.email == VICTIM)).one()
        delivery = session.scalars(
            select(Delivery).where(Delivery.subscriber_id == subscriber.id)
        ).one()
        return delivery, subscriber


def slowed_routes(app: App) -> set[str]:
    with app.database.transaction(readonly=True) as session:
        return set(
            session.scalars(select(RouteRate.route).where(RouteRate.slowed_until.is_not(None)))
        )


# (how the relay answers the victim, outcome of the victim's delivery, address suppressed, route slowed)
SCENARIOS = {
    "421 at RCPT": (
        {"rcpt": "421 4.7.0 Too many connections, closing"},
        DeliveryStatus.QUEUED,
        False,
        "relay:127.0.0.1",
    ),
    "450 at RCPT": ({"rcpt": "450 4.2.1 Mailbox busy"}, DeliveryStatus.QUEUED, False, None),
    "451 at RCPT": (
        {"rcpt": "451 4.7.1 Greylisted, try later"},
        DeliveryStatus.QUEUED,
        False,
        "example.org",
    ),
    "452 at RCPT": ({"rcpt": "452 4.2.2 Mailbox full"}, DeliveryStatus.QUEUED, False, None),
    "550 at RCPT": ({"rcpt": "550 5.1.1 No such user"}, DeliveryStatus.FAILED, True, None),
    "552 after DATA": ({"data": "552 5.3.4 Message too big"}, DeliveryStatus.FAILED, False, None),
    "554 after DATA": ({"data": "554 5.7.1 Rejected as spam"}, DeliveryStatus.FAILED, False, None),
    "disconnect in DATA": ({"hang_up": True}, DeliveryStatus.QUEUED, False, None),
    "server too slow": ({"stall": 2.5}, DeliveryStatus.QUEUED, False, None),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_each_failure_ends_in_its_defined_state(
    scenario: str,
    relay: tuple[ScriptedHandler, int],
    app_factory: Callable[..., App],
    database_url: str,
) -> None:
    handler, port = relay
    script, status, suppressed, slowed = SCENARIOS[scenario]
    if "rcpt" in script:
        handler.rcpt[VICTIM] = str(script["rcpt"])
    if "data" in script:
        handler.data[VICTIM] = str(script["data"])
    if script.get("hang_up"):
        handler.hang_up.add(VICTIM)
    if "stall" in script:
        handler.stall[VICTIM] = float(script["stall"])  # type: ignore[arg-type]
    app = edition(app_factory, database_url, port)

    outcome = app.sending.send(edition_date=EDITION, now=FIXED_NOW, clock=lambda: FIXED_NOW)
    assert outcome.report is not None

    # Everyone else got the edition: one reader's trouble holds up no one.
    delivered = {recipient for recipient, _ in handler.received}
    assert {f"reader{number}@example.com" for number in range(3)} <= delivered
    delivery, subscriber = victim_row(app)
    assert delivery.status is status
    assert delivery.last_error, "the relay's reply is kept"
    if status is DeliveryStatus.QUEUED:
        assert delivery.attempts == 1
        assert delivery.not_before > FIXED_NOW  # backoff
        assert delivery.lease_owner is None
    assert (subscriber.status is SubscriberStatus.BOUNCED) is suppressed
    if slowed:
        assert slowed in slowed_routes(app)
    with app.database.transaction(readonly=True) as session:
        issue = session.get_one(Issue, delivery.issue_id)
        assert issue.status is (
            IssueStatus.SENDING if status is DeliveryStatus.QUEUED else IssueStatus.SENT
        )


@pytest.mark.parametrize("scenario", ["421 at RCPT", "disconnect in DATA", "451 at RCPT"])
def test_temporary_failures_are_delivered_once_the_relay_recovers(
    scenario: str,
    relay: tuple[ScriptedHandler, int],
    app_factory: Callable[..., App],
    database_url: str,
) -> None:
    handler, port = relay
    script = SCENARIOS[scenario][0]
    if "rcpt" in script:
        handler.rcpt[VICTIM] = str(script["rcpt"])
    if script.get("hang_up"):
        handler.hang_up.add(VICTIM)
    app = edition(app_factory, database_url, port)
    app.sending.send(edition_date=EDITION, now=FIXED_NOW, clock=lambda: FIXED_NOW)
    handler.rcpt.clear()
    handler.hang_up.clear()
    later = FIXED_NOW + timedelta(hours=3)
    transport = app.transport()
    sender = app.sender(transport, clock=lambda: later)
    with app.database.transaction(readonly=True) as session:
        issue = session.scalars(select(Issue)).one()
    report = sender.deliver(issue)
    sender.close()
    transport.close()
    assert report.sent == 1 and report.finished
    recipients = [recipient for recipient, _ in handler.received]
    assert recipients.count(VICTIM) == 1
    assert len(recipients) == 4


def test_a_421_reopens_the_connection(
    relay: tuple[ScriptedHandler, int], app_factory: Callable[..., App], database_url: str
) -> None:
    handler, port = relay
    handler.rcpt[VICTIM] = "421 4.7.0 closing"
    app = edition(app_factory, database_url, port)
    app.sending.send(edition_date=EDITION, now=FIXED_NOW, clock=lambda: FIXED_NOW)
    assert handler.sessions == 2  # the first connection was dropped after the 421


def test_retries_stop_at_the_attempt_limit(
    relay: tuple[ScriptedHandler, int], app_factory: Callable[..., App], database_url: str
) -> None:
    handler, port = relay
    handler.rcpt[VICTIM] = "450 4.2.1 Mailbox busy"
    app = edition(app_factory, database_url, port)
    app = app_factory(
        database_url=database_url,
        transport="smtp",
        smtp_host="127.0.0.1",
        smtp_port=port,
        max_attempts=2,
    )
    now = FIXED_NOW
    app.sending.send(edition_date=EDITION, now=now, clock=lambda: now)
    for hours in (3, 6):
        transport = app.transport()
        sender = app.sender(transport, clock=lambda hours=hours: now + timedelta(hours=hours))
        with app.database.transaction(readonly=True) as session:
            issue = session.scalars(select(Issue)).one()
        sender.deliver(issue)
        sender.close()
        transport.close()
    delivery, subscriber = victim_row(app)
    assert delivery.status is DeliveryStatus.FAILED
    assert delivery.attempts == 2
    assert "gave up after 2 attempts" in (delivery.last_error or "")
    assert subscriber.status is SubscriberStatus.CONFIRMED  # a temporary problem never suppresses
