"""POST /api/webhooks/bounces on a real uvicorn server: SES via SNS, Postmark, Mailgun, raw reports.

The bodies are the providers' documented payloads (tests/provider_payloads.py names the pages).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from pytest_httpserver import HTTPServer
from sqlalchemy import func, select

from newsletter.bootstrap import App
from newsletter.cli import cli
from newsletter.delivery.provider_events import (
    ProviderEvent,
    SubscriptionRequest,
    confirm_subscription,
    read_event,
)
from newsletter.errors import ConfigError, ReportError, SourceError
from newsletter.models import Bounce, BounceKind, Delivery, DeliveryStatus
from newsletter.web import create_app
from subscribers.model import Subscriber, SubscriberStatus
from subscribers.service import add_subscriber
from tests import provider_payloads as payloads
from tests.conftest import FIXED_NOW
from tests.test_bounces import complaint, dsn
from tests.web_fixtures import Clock, LiveServer, free_port, serve, stop

SECRET = "webhook-secret-0123456789abcdef-0123456789"
EDITION = date(2026, 11, 24)
PATH = "/api/webhooks/bounces"
READERS = (
    "ses-gone",
    "ses-angry",
    "ses-full",
    "pm-gone",
    "pm-angry",
    "mg-gone",
    "raw-gone",
    "raw-angry",
    "fine",
)
SNS_HEADERS = {
    "content-type": "text/plain; charset=UTF-8",
    "x-amz-sns-message-type": "Notification",
    "user-agent": "Amazon Simple Notification Service Agent",
}


def address(name: str) -> str:
    return f"{name}@example.org"


@dataclass
class Site:
    app: App
    server: LiveServer
    http: httpx.Client
    message_ids: dict[str, str]

    @property
    def basic_url(self) -> str:
        """The URL with the secret as basic auth, as it is pasted into SNS or Postmark."""
        return self.server.url.replace("http://", f"http://bounces:{SECRET}@") + PATH

    def post(self, body: str | bytes, *, headers: dict[str, str] | None = None) -> httpx.Response:
        headers = {"content-type": "application/json", **(headers or {})}
        headers.setdefault("authorization", f"Bearer {SECRET}")
        return self.http.post(PATH, content=body, headers=headers)

    def status(self, name: str) -> SubscriberStatus:
        with self.app.database.transaction(readonly=True) as session:
            return session.scalars(
                select(Subscriber.status).where(Subscriber.email == address(name))
            ).one()

    def delivery(self, name: str) -> Delivery:
        with self.app.database.transaction(readonly=True) as session:
            return session.scalars(
                select(Delivery).join(Subscriber).where(Subscriber.email == address(name))
            ).one()

    def bounce_rows(self) -> int:
        with self.app.database.transaction(readonly=True) as session:
            return session.scalar(select(func.count()).select_from(Bounce)) or 0


def start(app: App) -> tuple[LiveServer, httpx.Client]:
    server = serve(create_app(app, clock=Clock()), free_port())
    return server, httpx.Client(base_url=server.url, timeout=15)


def running(app: App, *, sent: bool) -> Iterator[Site]:
    with app.database.transaction() as session:
        for name in READERS:
            add_subscriber(session, address(name), confirmed=True)
    if sent:
        app.sources.fetch(now=FIXED_NOW)
        app.sending.send(edition_date=EDITION, now=FIXED_NOW, clock=lambda: FIXED_NOW)
    with app.database.transaction(readonly=True) as session:
        rows = session.execute(
            select(Subscriber.email, Delivery.message_id).join(
                Delivery, Delivery.subscriber_id == Subscriber.id
            )
        ).all()
    message_ids = {email.split("@")[0]: str(mid) for email, mid in rows if mid}
    server, http = start(app)
    try:
        yield Site(app, server, http, message_ids)
    finally:
        http.close()
        stop(server)


@pytest.fixture
def site(app_factory: Callable[..., App], database_url: str) -> Iterator[Site]:
    """The webhook on SQLite and PostgreSQL, after an edition went to every reader."""
    yield from running(app_factory(database_url=database_url, webhook_secret=SECRET), sent=True)


@pytest.fixture
def quiet_site(app_factory: Callable[..., App], sqlite_url: str) -> Iterator[Site]:
    """The webhook on SQLite, the readers subscribed, nothing sent."""
    yield from running(app_factory(database_url=sqlite_url, webhook_secret=SECRET), sent=False)


# every provider, on both databases


def test_each_providers_event_has_the_outcome_of_the_mailbox_path(site: Site) -> None:
    # SES through SNS, authenticated by the basic auth of the URL pasted into the subscription.
    hard = payloads.ses_bounce(address("ses-gone"), message_id=site.message_ids["ses-gone"])
    answer = httpx.post(site.basic_url, content=payloads.sns(hard), headers=SNS_HEADERS)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "provider": "ses",
        "event_id": "ses:00000137860315fd-869464a4-8680-4114-98d3-716fe35851f9-000000",
        "result": "processed",
        "recipients": [{"recipient": address("ses-gone"), "kind": "hard", "outcome": "suppressed"}],
        "note": None,
    }
    assert site.status("ses-gone") is SubscriberStatus.BOUNCED
    delivery = site.delivery("ses-gone")
    assert delivery.status is DeliveryStatus.FAILED  # matched by our Message-ID
    assert "bounced after acceptance: 5.1.1" in (delivery.last_error or "")

    complained = payloads.ses_complaint(address("ses-angry"))
    answer = site.post(payloads.sns(complained, message_id="a2"), headers=SNS_HEADERS)
    assert answer.json()["recipients"][0]["outcome"] == "suppressed"
    assert site.status("ses-angry") is SubscriberStatus.COMPLAINED

    soft = payloads.ses_bounce(address("ses-full"), bounce_type="Transient", feedback_id="f3")
    answer = site.post(json.dumps(soft))  # raw message delivery: the SES event alone
    assert answer.json()["recipients"] == [
        {"recipient": address("ses-full"), "kind": "soft", "outcome": "counted"}
    ]
    assert site.status("ses-full") is SubscriberStatus.CONFIRMED
    assert site.delivery("ses-full").status is DeliveryStatus.SENT

    # Postmark: basic auth in the URL too, or a bearer token; matched by address.
    answer = httpx.post(site.basic_url, json=payloads.postmark_bounce(address("pm-gone").upper()))
    assert answer.json()["result"] == "processed", answer.text
    assert site.status("pm-gone") is SubscriberStatus.BOUNCED
    answer = site.post(json.dumps(payloads.postmark_spam_complaint(address("pm-angry"))))
    assert answer.json()["recipients"][0] == {
        "recipient": address("pm-angry"),
        "kind": "complaint",
        "outcome": "suppressed",
    }
    assert site.status("pm-angry") is SubscriberStatus.COMPLAINED

    # Mailgun: a permanent failure, matched by the Message-ID Mailgun quotes without brackets.
    failed = payloads.mailgun_failed(address("mg-gone"), message_id=site.message_ids["mg-gone"])
    assert site.post(json.dumps(failed)).json()["result"] == "processed"
    assert site.status("mg-gone") is SubscriberStatus.BOUNCED
    assert site.delivery("mg-gone").status is DeliveryStatus.FAILED

    # A raw DSN as message/rfc822, and an ARF report posted as multipart/report parts.
    report = dsn(
        "<r1@mx>",
        address("raw-gone"),
        action="failed",
        status="5.1.1",
        original_id=site.message_ids["raw-gone"],
    )
    answer = site.post(report, headers={"content-type": "message/rfc822"})
    assert answer.json()["provider"] == "message"
    assert answer.json()["event_id"] == "<r1@mx>"
    assert site.status("raw-gone") is SubscriberStatus.BOUNCED
    whole = complaint("<c1@isp>", address("raw-angry"))
    _, _, parts = whole.partition(b"\r\n\r\n")
    answer = site.post(
        parts,
        headers={"content-type": 'multipart/report; report-type=feedback-report; boundary="F"'},
    )
    assert answer.json()["recipients"][0]["kind"] == "complaint", answer.text
    assert site.status("raw-angry") is SubscriberStatus.COMPLAINED

    assert site.status("fine") is SubscriberStatus.CONFIRMED
    assert site.bounce_rows() == 8


def test_a_redelivered_event_changes_nothing_and_answers_200_again(site: Site) -> None:
    body = payloads.sns(payloads.ses_bounce(address("ses-gone")))
    first = site.post(body, headers=SNS_HEADERS)
    assert first.json()["result"] == "processed"
    with site.app.database.transaction() as session:  # the operator lets the reader back in
        subscriber = session.scalars(
            select(Subscriber).where(Subscriber.email == address("ses-gone"))
        ).one()
        subscriber.status = SubscriberStatus.CONFIRMED
    again = site.post(body, headers=SNS_HEADERS)
    assert again.status_code == 200
    assert again.json()["result"] == "already-processed"
    assert again.json()["recipients"][0]["outcome"] == "already-processed"
    assert site.status("ses-gone") is SubscriberStatus.CONFIRMED
    for event in (
        json.dumps(payloads.postmark_bounce(address("pm-gone"))),
        json.dumps(payloads.postmark_spam_complaint(address("pm-angry"))),
    ):
        assert site.post(event).json()["result"] == "processed"
        assert site.post(event).json()["result"] == "already-processed"
    assert site.bounce_rows() == 3


def test_an_unknown_address_is_ignored_with_200(quiet_site: Site) -> None:
    answer = quiet_site.post(json.dumps(payloads.postmark_bounce("stranger@example.net")))
    assert answer.status_code == 200
    assert answer.json()["result"] == "ignored"
    assert answer.json()["recipients"][0]["outcome"] == "ignored"
    assert answer.json()["note"] == "no subscriber has this address"
    delivered = quiet_site.post(
        payloads.sns(payloads.ses_delivery(address("fine"))), headers=SNS_HEADERS
    )
    assert delivered.json()["result"] == "ignored"
    assert "Delivery event is not a bounce" in delivered.json()["note"]
    opened = quiet_site.post(
        json.dumps({"RecordType": "Open", "MessageID": "x", "Recipient": "a@b"})
    )
    assert opened.json()["result"] == "ignored"
    assert quiet_site.status("fine") is SubscriberStatus.CONFIRMED


# authentication


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer wrong-secret-0123456789abcdef-0123456789"},
        {"authorization": f"Bearer {SECRET[:-1]}"},
        {"authorization": "Basic " + base64.b64encode(b"bounces:wrong").decode()},
        {"authorization": f"Basic {SECRET}"},  # not base64
    ],
    ids=["none", "wrong", "prefix", "wrong-basic", "malformed-basic"],
)
def test_without_the_secret_nothing_changes(
    app_factory: Callable[..., App], sqlite_url: str, headers: dict[str, str]
) -> None:
    app = app_factory(database_url=sqlite_url, webhook_secret=SECRET)
    with app.database.transaction() as session:
        add_subscriber(session, address("pm-gone"), confirmed=True)
    server, http = start(app)
    try:
        body = json.dumps(payloads.postmark_bounce(address("pm-gone")))
        answer = http.post(
            PATH, content=body, headers={"content-type": "application/json", **headers}
        )
        assert answer.status_code == 401
        assert answer.json()["error"]
        assert answer.headers["www-authenticate"].startswith("Basic")
        # A secret in the query string would be written to access logs: it is not accepted.
        query = http.post(f"{PATH}?token={SECRET}", content=body)
        assert query.status_code == 401
        admin = http.post(PATH, content=body, headers={"authorization": "Bearer " + "a" * 40})
        assert admin.status_code == 401
    finally:
        http.close()
        stop(server)
    with app.database.transaction(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(Bounce)) == 0


def test_without_a_secret_setting_the_webhook_is_off(
    app_factory: Callable[..., App], sqlite_url: str
) -> None:
    app = app_factory(database_url=sqlite_url, webhook_secret="")
    server, http = start(app)
    try:
        answer = http.post(PATH, json=payloads.postmark_bounce("a@example.org"))
        assert answer.status_code == 404
        assert "NEWSLETTER_WEBHOOK_SECRET" in answer.json()["error"]
    finally:
        http.close()
        stop(server)


def test_a_short_secret_is_a_settings_error_outside_the_demo(
    make_settings: Callable[..., object],
) -> None:
    with pytest.raises(ConfigError, match="NEWSLETTER_WEBHOOK_SECRET: is 5 characters long"):
        make_settings(demo=False, webhook_secret="short", secret_key="k" * 40)


# bad input


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (b"{not json", "application/json", "not valid JSON"),
        (b"[1, 2]", "application/json", "not a JSON object"),
        (b'{"hello": "world"}', "application/json", "not an event this webhook reads"),
        (
            json.dumps(
                {"Type": "Notification", "TopicArn": "t", "MessageId": "m", "Message": "hi"}
            ).encode(),
            "text/plain",
            "not an Amazon SES event",
        ),
        (
            json.dumps(
                {"notificationType": "Bounce", "bounce": {"bounceType": "Permanent"}}
            ).encode(),
            "application/json",
            "bouncedRecipients is missing",
        ),
        (
            json.dumps({"RecordType": "Bounce", "Type": "HardBounce", "ID": 1}).encode(),
            "application/json",
            "Email is missing",
        ),
        (b"", "application/json", "empty"),
        (b"just some words\nand more", "text/plain", "neither JSON nor a mail message"),
        (b"<html></html>", "text/html", "cannot read a body of type 'text/html'"),
    ],
    ids=[
        "json",
        "array",
        "unknown",
        "sns-not-ses",
        "ses-no-recipients",
        "postmark-no-email",
        "empty",
        "words",
        "html",
    ],
)
def test_bad_input_is_a_400_an_operator_can_act_on(
    quiet_site: Site,
    body: bytes,
    content_type: str,
    expected: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = quiet_site.bounce_rows()
    with caplog.at_level(logging.WARNING, logger="newsletter.services.bounce_webhook"):
        answer = quiet_site.post(body, headers={"content-type": content_type})
    assert answer.status_code == 400, answer.text
    assert expected in answer.json()["error"]
    assert answer.json()["hint"]
    assert quiet_site.bounce_rows() == before
    # A provider does not retry a 4xx: the log tells the operator what was refused.
    assert any(expected in record.getMessage() for record in caplog.records)


def test_an_oversize_body_is_a_413(quiet_site: Site) -> None:
    answer = quiet_site.post(b"{" + b" " * 1_000_001 + b"}")
    assert answer.status_code == 413
    assert quiet_site.bounce_rows() == 0


def test_a_message_that_is_not_a_report_is_ignored_with_the_reason(quiet_site: Site) -> None:
    answer = quiet_site.post(
        b"From: someone@example.org\r\nSubject: hello\r\n\r\nnot a report\r\n",
        headers={"content-type": "message/rfc822"},
    )
    assert answer.status_code == 200
    assert answer.json()["result"] == "ignored"
    assert "RFC 3464" in answer.json()["note"]


# Amazon SNS subscription confirmation


def test_sns_subscription_is_logged_for_the_operator_by_default(
    quiet_site: Site, httpserver: HTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = httpserver.url_for("/confirm")
    with caplog.at_level(logging.WARNING, logger="newsletter.services.bounce_webhook"):
        answer = quiet_site.post(payloads.sns_subscription(url), headers=SNS_HEADERS)
    assert answer.status_code == 200
    assert answer.json()["result"] == "subscription-pending"
    assert any(url in record.getMessage() for record in caplog.records)
    assert httpserver.log == []  # nothing fetched


def test_sns_subscription_confirmed_only_on_an_amazon_url(
    app_factory: Callable[..., App], sqlite_url: str, httpserver: HTTPServer
) -> None:
    app = app_factory(database_url=sqlite_url, webhook_secret=SECRET, webhook_confirm_sns=True)
    server, http = start(app)
    try:
        answer = http.post(
            PATH,
            content=payloads.sns_subscription(httpserver.url_for("/confirm")),
            headers={**SNS_HEADERS, "authorization": f"Bearer {SECRET}"},
        )
    finally:
        http.close()
        stop(server)
    assert answer.status_code == 400
    assert "not an https URL of Amazon SNS" in answer.json()["error"]
    assert httpserver.log == []


def test_confirming_a_subscription_visits_the_subscribe_url(httpserver: HTTPServer) -> None:
    httpserver.expect_request(
        "/", query_string={"Action": "ConfirmSubscription"}
    ).respond_with_data("<ConfirmSubscriptionResponse/>", content_type="text/xml")
    confirm_subscription(httpserver.url_for("/") + "?Action=ConfirmSubscription")
    assert len(httpserver.log) == 1
    with pytest.raises(SourceError, match="answered 500"):
        confirm_subscription(httpserver.url_for("/expired"))


def test_the_subscription_request_is_read() -> None:
    event = read_event(
        payloads.sns_subscription(
            "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription"
        ).encode(),
        "text/plain; charset=UTF-8",
    )
    assert isinstance(event, SubscriptionRequest)
    assert event.topic_arn == payloads.TOPIC


# reading, without a server


def test_every_postmark_bounce_type_has_a_meaning() -> None:
    kinds = {}
    for kind in (
        "HardBounce",
        "SoftBounce",
        "Transient",
        "AutoResponder",
        "Unsubscribe",
        "BadEmailAddress",
    ):
        event = read_event(
            json.dumps(payloads.postmark_bounce("a@example.org", kind=kind)).encode(),
            "application/json",
        )
        assert isinstance(event, ProviderEvent)
        kinds[kind] = event.reports[0].kind if event.reports else None
    assert kinds == {
        "HardBounce": BounceKind.HARD,
        "SoftBounce": BounceKind.SOFT,
        "Transient": BounceKind.SOFT,
        "AutoResponder": None,
        "Unsubscribe": None,
        "BadEmailAddress": BounceKind.HARD,
    }


def test_mailgun_temporary_failure_is_soft() -> None:
    event = read_event(
        json.dumps(
            payloads.mailgun_failed("a@example.org", message_id="<m@x>", severity="temporary")
        ).encode(),
        "application/json",
    )
    assert isinstance(event, ProviderEvent)
    [report] = event.reports
    assert (report.kind, report.status, report.original_message_id) == (
        BounceKind.SOFT,
        "452",
        "<m@x>",
    )


def test_read_event_refuses_what_it_cannot_read() -> None:
    with pytest.raises(ReportError, match="not valid JSON"):
        read_event(b"{", "application/json")


# the command line


def test_bounces_receive_reads_a_saved_event_or_report(
    sqlite_url: str, tmp_path: Path, make_settings: Callable[..., object]
) -> None:
    env = {"NEWSLETTER_CONFIG": "examples/demo.toml", "NEWSLETTER_DATABASE_URL": sqlite_url}
    runner = CliRunner()
    for name in ("pm-gone", "raw-gone"):
        added = runner.invoke(cli, ["subscribers", "add", address(name), "--confirmed"], env=env)
        assert added.exit_code == 0, added.output
    event = tmp_path / "bounce.json"
    event.write_text(payloads.sns(payloads.ses_bounce(address("pm-gone"))))
    report = tmp_path / "bounce.eml"
    report.write_bytes(dsn("<r9@mx>", address("raw-gone"), action="failed", status="5.1.1"))
    for path in (event, report):
        result = runner.invoke(cli, ["bounces", "receive", str(path)], env=env)
        assert result.exit_code == 0, result.output
        assert "processed" in result.stdout
        assert "\tsuppressed" in result.stdout
    again = runner.invoke(cli, ["bounces", "receive", str(event)], env=env)
    assert "already-processed" in again.stdout
    listed = runner.invoke(cli, ["subscribers", "list"], env=env).stdout
    assert f"{address('pm-gone')}\tbounced" in listed
    assert f"{address('raw-gone')}\tbounced" in listed

    # One message is not an mbox: `bounces process` says so instead of reading nothing.
    mistaken = runner.invoke(cli, ["bounces", "process", str(report)], env=env)
    assert mistaken.exit_code == 2
    assert "not an mbox" in mistaken.stderr
    assert "bounces receive" in mistaken.stderr
    broken = tmp_path / "broken.json"
    broken.write_text('{"RecordType": "Bounce"')
    failed = runner.invoke(cli, ["bounces", "receive", str(broken)], env=env)
    assert failed.exit_code == 2
    assert "not valid JSON" in failed.stderr
