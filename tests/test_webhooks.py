"""Outgoing webhooks against a real local HTTP receiver: signatures, retries, outages, disabling."""

from __future__ import annotations

import json
import mailbox
import threading
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy import func, select
from standardwebhooks import Webhook
from werkzeug import Request, Response

from newsletter.bootstrap import App
from newsletter.models import WebhookDelivery, WebhookEndpoint, WebhookStatus
from newsletter.services import privacy, subscribers, subscriptions, webhooks
from newsletter.webhooks import events, outbound
from subscribers.service import add_subscriber
from tests.conftest import FIXED_NOW, SmtpServer, free_port
from tests.test_bounces import complaint, dsn
from tests.test_delivery import smtp_app
from tests.test_unsubscribe_mailbox import request as unsubscribe_request

EDITION = date(2026, 11, 24)


class Clock:
    """A clock the test moves."""

    def __init__(self, now: datetime = FIXED_NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def received(server: HTTPServer) -> list[Request]:
    return [request for request, _ in server.log]


def verified(request: Request, secret: str) -> dict[str, Any]:
    """The body of a received message, after Standard Webhooks' own verification."""
    body: dict[str, Any] = Webhook(secret).verify(
        request.get_data(as_text=True), dict(request.headers)
    )
    return body


def register(app: App, url: str, event_types: list[str] | None = None) -> webhooks.Created:
    return webhooks.add(app.database, url=url, events=event_types, description="CRM", now=FIXED_NOW)


@pytest.fixture
def receiver(httpserver: HTTPServer) -> HTTPServer:
    return httpserver


def queued(app: App) -> dict[str, int]:
    with app.database.transaction(readonly=True) as session:
        rows = session.execute(
            select(WebhookDelivery.status, func.count()).group_by(WebhookDelivery.status)
        ).all()
    return {status.value: count for status, count in rows}


def test_subscriber_events_arrive_signed_with_minimal_data(
    app_factory: Callable[..., App], database_url: str, receiver: HTTPServer
) -> None:
    app = app_factory(database_url=database_url)
    receiver.expect_request("/hook", method="POST").respond_with_data("ok")
    created = register(app, receiver.url_for("/hook"))
    assert created.secret.startswith("whsec_")
    added = subscribers.add(
        app.database,
        signer=app.signer(),
        email="Ada@Example.org",
        name="Ada Lovelace",
        timezone=None,
        confirmed=True,
        source="cli",
        now=FIXED_NOW,
    )
    subscriptions.leave_by_operator(
        app.database, "ada@example.org", mails=None, reason="operator", now=FIXED_NOW
    )
    hooks = app.webhook_sender(Clock())
    report = hooks.deliver_due()
    hooks.close()
    assert (report.delivered, report.failed) == (2, 0)
    requests = received(receiver)
    bodies = [verified(request, created.secret) for request in requests]
    assert [body["type"] for body in bodies] == [
        "subscriber.confirmed",
        "subscriber.unsubscribed",
    ]
    subscriber = {"id": added.subscriber.id, "email": "Ada@example.org"}
    assert bodies[0]["data"] == {"subscriber": subscriber, "via": "operator"}
    assert bodies[1]["data"] == {"subscriber": subscriber, "via": "operator"}
    assert bodies[0]["timestamp"] == FIXED_NOW.isoformat()
    raw = " ".join(request.get_data(as_text=True) for request in requests)
    assert "Lovelace" not in raw and added.subscriber.link_key not in raw
    ids = [request.headers["webhook-id"] for request in requests]
    assert len(set(ids)) == 2 and all(value.startswith("msg_") for value in ids)
    assert all(request.headers["content-type"] == "application/json" for request in requests)
    assert queued(app) == {"delivered": 2}
    # a wrong secret does not verify
    with pytest.raises(Exception, match="signature"):
        verified(requests[0], webhooks.new_secret())


def test_an_edition_sent_its_bounces_and_complaints_are_events(
    app_factory: Callable[..., App], database_url: str, receiver: HTTPServer, tmp_path: Path
) -> None:
    app = app_factory(database_url=database_url)
    receiver.expect_request("/hook", method="POST").respond_with_data("ok")
    created = register(app, receiver.url_for("/hook"))
    app.sources.fetch(now=FIXED_NOW)
    with app.database.transaction() as session:
        for name in ("gone", "angry", "fine"):
            add_subscriber(session, f"{name}@example.org", confirmed=True)
    app.sending.send(edition_date=EDITION, now=FIXED_NOW, clock=lambda: FIXED_NOW)
    box = mailbox.mbox(str(tmp_path / "bounces.mbox"))
    box.add(dsn("<r1@mx>", "gone@example.org", action="failed", status="5.1.1"))
    box.add(complaint("<r2@isp>", "angry@example.org"))
    box.flush()
    app.mailboxes.process_bounces(tmp_path / "bounces.mbox", now=FIXED_NOW)
    app.mailboxes.process_bounces(tmp_path / "bounces.mbox", now=FIXED_NOW)  # seen: no event
    hooks = app.webhook_sender(Clock())
    hooks.deliver_due()
    hooks.close()
    bodies = [verified(request, created.secret) for request in received(receiver)]
    kinds = [body["type"] for body in bodies]
    assert sorted(kinds) == [
        "delivery.bounced",
        "delivery.complained",
        "edition.sent",
        "subscriber.suppressed",
        "subscriber.suppressed",
    ]
    by_type = {body["type"]: body["data"] for body in bodies}
    sent = by_type["edition.sent"]
    assert sent["edition"]["date"] == "2026-11-24"
    assert sent["deliveries"]["sent"] == 3
    bounced = by_type["delivery.bounced"]
    assert bounced["subscriber"]["email"] == "gone@example.org"
    assert bounced["kind"] == "hard" and bounced["status"] == "5.1.1"
    assert by_type["delivery.complained"]["subscriber"]["email"] == "angry@example.org"
    suppressed = sorted(
        (body["data"]["subscriber"]["email"], body["data"]["status"])
        for body in bodies
        if body["type"] == "subscriber.suppressed"
    )
    assert suppressed == [("angry@example.org", "complained"), ("gone@example.org", "bounced")]


def test_an_event_is_queued_only_with_its_change(
    app_factory: Callable[..., App], sqlite_url: str
) -> None:
    app = app_factory(database_url=sqlite_url)
    register(app, "http://127.0.0.1:9/hook")
    with pytest.raises(RuntimeError), app.database.transaction() as session:
        subscriber, _ = add_subscriber(session, "rolled@example.org", confirmed=True)
        assert events.emit_about(session, events.SUBSCRIBER_CONFIRMED, subscriber) == 1
        raise RuntimeError("the change fails")
    assert queued(app) == {}


def test_endpoints_receive_only_their_events_and_not_while_disabled_by_hand(
    app_factory: Callable[..., App], sqlite_url: str
) -> None:
    app = app_factory(database_url=sqlite_url)
    editions_only = register(app, "http://127.0.0.1:9/a", ["edition.sent"])
    everything = register(app, "http://127.0.0.1:9/b")
    off = register(app, "http://127.0.0.1:9/c")
    webhooks.change(app.database, off.endpoint.id, enabled=False, now=FIXED_NOW)
    with app.database.transaction() as session:
        subscriber, _ = add_subscriber(session, "one@example.org", confirmed=True)
        events.emit_about(session, events.SUBSCRIBER_CONFIRMED, subscriber, now=FIXED_NOW)
    listed = {endpoint.id: endpoint for endpoint in webhooks.endpoints(app.database)}
    assert listed[editions_only.endpoint.id].pending == 0
    assert listed[everything.endpoint.id].pending == 1
    assert listed[off.endpoint.id].pending == 0
    assert listed[off.endpoint.id].disabled_reason == "disabled by an operator"


def test_a_failing_message_is_retried_with_backoff_then_delivered(
    app_factory: Callable[..., App], database_url: str, receiver: HTTPServer
) -> None:
    app = app_factory(database_url=database_url)
    receiver.expect_ordered_request("/hook").respond_with_data("busy", status=503)
    receiver.expect_ordered_request("/hook").respond_with_data("oops", status=500)
    receiver.expect_ordered_request("/hook").respond_with_data("", status=204)
    created = register(app, receiver.url_for("/hook"))
    with app.database.transaction() as session:
        subscriber, _ = add_subscriber(session, "retry@example.org", confirmed=True)
        events.emit_about(session, events.SUBSCRIBER_CONFIRMED, subscriber, now=FIXED_NOW)
    clock = Clock()
    hooks = app.webhook_sender(clock)
    try:
        assert hooks.deliver_due().failed == 1
        assert hooks.deliver_due().attempted == 0  # waits for its backoff
        first_wait = hooks.next_due()
        assert first_wait is not None
        assert timedelta(seconds=24) <= first_wait - FIXED_NOW <= timedelta(seconds=30)
        clock.advance(30)
        assert hooks.deliver_due().failed == 1
        clock.advance(30)
        assert hooks.deliver_due().attempted == 0  # the second wait is longer (doubled)
        clock.advance(30)
        assert hooks.deliver_due().delivered == 1
    finally:
        hooks.close()
    requests = received(receiver)
    assert len(requests) == 3
    assert len({request.headers["webhook-id"] for request in requests}) == 1
    for request in requests:
        assert verified(request, created.secret)["type"] == "subscriber.confirmed"
    with app.database.transaction(readonly=True) as session:
        row = session.scalars(select(WebhookDelivery)).one()
        endpoint = session.scalars(select(WebhookEndpoint)).one()
    assert (row.status, row.attempts, row.last_status) == (WebhookStatus.DELIVERED, 3, 204)
    assert endpoint.consecutive_failures == 0 and endpoint.enabled


def test_a_receiver_down_for_a_while_loses_nothing_and_gets_each_event_once(
    app_factory: Callable[..., App], database_url: str
) -> None:
    """Down long enough to be disabled; events go on being queued; enabled again, all arrive."""
    app = app_factory(database_url=database_url, webhook_failure_limit=3)
    server = HTTPServer(host="127.0.0.1", port=free_port())
    server.expect_request("/hook", method="POST").respond_with_data("ok")
    created = register(app, server.url_for("/hook"))
    clock = Clock()

    def confirm(count: int, start: int) -> None:
        with app.database.transaction() as session:
            for number in range(start, start + count):
                subscriber, _ = add_subscriber(session, f"r{number}@example.org", confirmed=True)
                events.emit_about(session, events.SUBSCRIBER_CONFIRMED, subscriber, now=clock())

    confirm(4, 0)
    hooks = app.webhook_sender(clock)
    try:
        attempts = 0
        for _ in range(10):  # the receiver is down
            report = hooks.deliver_due()
            attempts += report.attempted
            assert report.delivered == 0
            clock.advance(3600)
        assert attempts == 3  # one attempt per backoff step, not one per waiting message
        endpoint = webhooks.endpoint(app.database, created.endpoint.id)
        assert not endpoint.enabled
        assert endpoint.disabled_reason is not None
        assert "3 failed attempts in a row" in endpoint.disabled_reason
        assert "ConnectError" in endpoint.disabled_reason
        confirm(3, 4)  # events while disabled after failures are still queued
        assert webhooks.endpoint(app.database, created.endpoint.id).pending == 7
        assert hooks.deliver_due().attempted == 0  # nothing goes to a disabled endpoint
        server.start()
        try:
            webhooks.change(app.database, created.endpoint.id, enabled=True, now=clock())
            while hooks.deliver_due().attempted:
                pass
            requests = received(server)
        finally:
            server.clear()
            server.stop()
    finally:
        hooks.close()
    ids = [request.headers["webhook-id"] for request in requests]
    assert len(ids) == len(set(ids)) == 7
    emails = sorted(
        verified(request, created.secret)["data"]["subscriber"]["email"] for request in requests
    )
    assert emails == sorted(f"r{number}@example.org" for number in range(7))
    assert queued(app) == {"delivered": 7}
    endpoint = webhooks.endpoint(app.database, created.endpoint.id)
    assert endpoint.enabled and endpoint.consecutive_failures == 0


def test_a_message_claimed_by_a_worker_that_died_is_posted_again_with_its_id(
    app_factory: Callable[..., App], database_url: str, receiver: HTTPServer
) -> None:
    app = app_factory(database_url=database_url)
    receiver.expect_request("/hook", method="POST").respond_with_data("ok")
    created = register(app, receiver.url_for("/hook"))
    with app.database.transaction() as session:
        subscriber, _ = add_subscriber(session, "crash@example.org", confirmed=True)
        events.emit_about(session, events.SUBSCRIBER_CONFIRMED, subscriber, now=FIXED_NOW)
    clock = Clock()
    dead = app.webhook_sender(clock)
    with app.database.transaction() as session:  # claimed, posted, then the process died
        (message,) = outbound.claim(
            session, owner=dead.owner, now=clock(), lease=dead.lease, limit=10
        )
    with httpx.Client(timeout=5) as client:
        assert outbound.post(
            client, message.url, message.secret, message.message_id, message.payload
        ).delivered
    other = app.webhook_sender(clock)
    try:
        assert other.deliver_due().attempted == 0  # still under the dead worker's lease
        clock.advance(dead.lease.total_seconds() + 1)
        assert other.deliver_due().delivered == 1
    finally:
        other.close()
    requests = received(receiver)
    assert len(requests) == 2
    assert {request.headers["webhook-id"] for request in requests} == {message.message_id}
    assert verified(requests[1], created.secret)["type"] == "subscriber.confirmed"


def test_the_worker_posts_what_is_due(
    app_factory: Callable[..., App], sqlite_url: str, receiver: HTTPServer
) -> None:
    app = app_factory(database_url=sqlite_url)
    receiver.expect_request("/hook", method="POST").respond_with_data("ok")
    created = register(app, receiver.url_for("/hook"))
    with app.database.transaction() as session:
        subscriber, _ = add_subscriber(session, "worker@example.org", confirmed=True)
        events.emit_about(session, events.SUBSCRIBER_CONFIRMED, subscriber, now=FIXED_NOW)
    report = app.worker.run(stop=threading.Event(), exit_when_idle=True, clock=lambda: FIXED_NOW)
    assert report.webhooks_delivered == 1
    (request,) = received(receiver)
    assert json.loads(request.get_data(as_text=True)) == verified(request, created.secret)


def test_erasing_a_subscriber_drops_the_messages_about_them(
    app_factory: Callable[..., App], database_url: str
) -> None:
    app = app_factory(database_url=database_url)
    register(app, "http://127.0.0.1:9/hook")
    with app.database.transaction() as session:
        for name in ("erased", "kept"):
            subscriber, _ = add_subscriber(session, f"{name}@example.org", confirmed=True)
            events.emit_about(session, events.SUBSCRIBER_CONFIRMED, subscriber, now=FIXED_NOW)
    privacy.erase_address(app.database, "erased@example.org", now=FIXED_NOW)
    with app.database.transaction(readonly=True) as session:
        payloads = session.scalars(select(WebhookDelivery.payload)).all()
    assert len(payloads) == 1
    assert "kept@example.org" in payloads[0]


def test_delivered_messages_are_kept_for_a_while_then_deleted(
    app_factory: Callable[..., App], sqlite_url: str, receiver: HTTPServer
) -> None:
    app = app_factory(database_url=sqlite_url, webhook_keep_days=2)
    receiver.expect_request("/hook", method="POST").respond_with_data("ok")
    register(app, receiver.url_for("/hook"))
    with app.database.transaction() as session:
        subscriber, _ = add_subscriber(session, "old@example.org", confirmed=True)
        events.emit_about(session, events.SUBSCRIBER_CONFIRMED, subscriber, now=FIXED_NOW)
    clock = Clock()
    hooks = app.webhook_sender(clock)
    try:
        assert hooks.deliver_due().delivered == 1
        clock.advance(86400)
        hooks.deliver_due()
        assert queued(app) == {"delivered": 1}
        clock.advance(86400 + 3600)
        hooks.deliver_due()
        assert queued(app) == {}
    finally:
        hooks.close()


def payloads(app: App) -> list[dict[str, Any]]:
    with app.database.transaction(readonly=True) as session:
        rows = session.scalars(select(WebhookDelivery.payload).order_by(WebhookDelivery.id)).all()
    return [json.loads(row) for row in rows]


def test_a_relay_refusing_a_recipient_for_good_is_a_suppression_event(
    app_factory: Callable[..., App], database_url: str, smtp_server: SmtpServer
) -> None:
    smtp_server.handler.replies["refused@example.com"] = "550 5.1.1 No such user"
    app, _ = smtp_app(app_factory, database_url, smtp_server)
    register(app, "http://127.0.0.1:9/hook", ["subscriber.suppressed"])
    with app.database.transaction() as session:
        for address in ("refused@example.com", "fine@example.com"):
            add_subscriber(session, address, confirmed=True)
    app.sending.send(edition_date=EDITION, now=FIXED_NOW)
    (body,) = payloads(app)
    assert body["type"] == "subscriber.suppressed"
    assert body["data"]["subscriber"]["email"] == "refused@example.com"
    assert body["data"]["status"] == "bounced"
    assert "550" in body["data"]["reason"]


def test_a_mailed_unsubscribe_request_is_an_event(
    app_factory: Callable[..., App], database_url: str, tmp_path: Path
) -> None:
    inbox = tmp_path / "unsubscribe"
    app = app_factory(database_url=database_url, unsubscribe_mailbox=inbox)
    register(app, "http://127.0.0.1:9/hook", ["subscriber.unsubscribed"])
    with app.database.transaction() as session:
        add_subscriber(session, "leaving@example.org", confirmed=True)
    box = mailbox.Maildir(inbox, create=True)
    box.add(unsubscribe_request("leaving@example.org", "unsubscribe"))
    app.mailboxes.process_unsubscribes(inbox, now=FIXED_NOW)
    (body,) = payloads(app)
    assert body["type"] == "subscriber.unsubscribed"
    assert body["data"]["via"] == "mailto"
    assert body["data"]["subscriber"]["email"] == "leaving@example.org"


def test_the_webhook_loop_of_the_web_process_posts_until_stopped(
    app_factory: Callable[..., App], sqlite_url: str, receiver: HTTPServer
) -> None:
    app = app_factory(database_url=sqlite_url)
    receiver.expect_request("/hook", method="POST").respond_with_data("ok")
    register(app, receiver.url_for("/hook"))
    stop = threading.Event()
    loop = threading.Thread(
        target=app.worker.deliver_webhooks, kwargs={"stop": stop, "poll_seconds": 0.1}
    )
    loop.start()
    try:
        with app.database.transaction() as session:
            subscriber, _ = add_subscriber(session, "live@example.org", confirmed=True)
            events.emit_about(session, events.SUBSCRIBER_CONFIRMED, subscriber)
        for _ in range(200):
            if received(receiver):
                break
            stop.wait(0.05)
    finally:
        stop.set()
        loop.join()
    assert len(received(receiver)) == 1
    assert queued(app) == {"delivered": 1}


def test_a_message_the_receiver_always_refuses_does_not_hold_back_the_others(
    app_factory: Callable[..., App], sqlite_url: str, receiver: HTTPServer
) -> None:
    def answer(request: Request) -> Response:
        refused = "poison@" in request.get_data(as_text=True)
        return Response("bad payload" if refused else "ok", status=400 if refused else 200)

    app = app_factory(database_url=sqlite_url)
    receiver.expect_request("/hook", method="POST").respond_with_handler(answer)
    register(app, receiver.url_for("/hook"))
    with app.database.transaction() as session:
        for name in ("poison", "good"):
            subscriber, _ = add_subscriber(session, f"{name}@example.org", confirmed=True)
            events.emit_about(session, events.SUBSCRIBER_CONFIRMED, subscriber, now=FIXED_NOW)
    clock = Clock()
    hooks = app.webhook_sender(clock)
    try:
        first = hooks.deliver_due()
        assert (first.delivered, first.failed) == (0, 1)  # the rest of the pass waits
        clock.advance(30)
        second = hooks.deliver_due()
        assert (second.delivered, second.failed) == (1, 1)  # the refused one went behind
    finally:
        hooks.close()
    endpoint = webhooks.endpoints(app.database)[0]
    assert endpoint.enabled and endpoint.consecutive_failures == 1
    assert endpoint.last_error == "HTTP 400: bad payload"
    assert (endpoint.pending, endpoint.delivered) == (1, 1)
