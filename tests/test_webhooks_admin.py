"""Outgoing webhooks from the operator's side: the CLI, the admin API, and the public flows' events."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result
from pytest_httpserver import HTTPServer
from sqlalchemy import select
from standardwebhooks import Webhook

from newsletter.cli import cli
from newsletter.models import WebhookDelivery
from subscribers.service import add_subscriber
from tests import provider_payloads
from tests.conftest import FIXED_NOW
from tests.web_fixtures import Web, list_unsubscribe_url, path_of, web, web_db, web_factory

__all__ = ["web", "web_db", "web_factory"]


def invoke(database_url: str, *args: str) -> Result:
    env = {
        "NEWSLETTER_CONFIG": "examples/demo.toml",
        "NEWSLETTER_DATABASE_URL": database_url,
        "COLUMNS": "250",
    }
    return CliRunner().invoke(cli, ["webhooks", *args], env=env)


def test_the_cli_manages_endpoints(
    make_settings: Callable[..., object], database_url: str, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    url = httpserver.url_for("/hook")
    added = invoke(database_url, "add", url, "--events", "subscriber.confirmed,edition.sent")
    assert added.exit_code == 0, added.output
    secret = added.stdout.strip().splitlines()[-1]
    assert secret.startswith("whsec_")
    assert "Added endpoint 1" in added.stdout
    assert invoke(database_url, "secret", "1").stdout.strip() == secret

    tested = invoke(database_url, "test", "1")
    assert tested.exit_code == 0, tested.output
    assert "HTTP 200" in tested.stdout
    (request, _), *_ = httpserver.log
    body = Webhook(secret).verify(request.get_data(as_text=True), dict(request.headers))
    assert body["type"] == "webhook.test"

    listed = invoke(database_url, "list")
    assert "subscriber.confirmed, edition.sent" in listed.stdout
    assert "enabled" in listed.stdout

    assert invoke(database_url, "events", "1", "delivery.bounced").exit_code == 0
    assert "events: delivery.bounced" in invoke(database_url, "show", "1").stdout
    assert invoke(database_url, "disable", "1").exit_code == 0
    assert "disabled: disabled by an operator" in invoke(database_url, "show", "1").stdout
    assert invoke(database_url, "enable", "1").exit_code == 0
    assert "state: enabled" in invoke(database_url, "show", "1").stdout
    assert invoke(database_url, "remove", "1").exit_code == 0
    assert "No webhook endpoint" in invoke(database_url, "list").stdout


def test_the_cli_explains_bad_input(make_settings: Callable[..., object], sqlite_url: str) -> None:
    wrong_event = invoke(
        sqlite_url, "add", "https://hooks.example.com/x", "--events", "edition.done"
    )
    assert wrong_event.exit_code == 2
    assert "unknown webhook event edition.done" in wrong_event.stderr
    assert "subscriber.confirmed" in wrong_event.stderr  # the hint lists the choices
    not_http = invoke(sqlite_url, "add", "ftp://hooks.example.com/x")
    assert not_http.exit_code == 2
    assert "not an http:// or https:// URL" in not_http.stderr
    missing = invoke(sqlite_url, "enable", "42")
    assert missing.exit_code == 1
    assert "no webhook endpoint has the id 42" in missing.stderr
    down = invoke(sqlite_url, "add", "http://127.0.0.1:9/none")
    assert down.exit_code == 0
    failed = invoke(sqlite_url, "test", "1")
    assert failed.exit_code == 1
    assert "Not delivered" in failed.stderr


def test_the_api_manages_endpoints(web_db: Web, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    client, auth = web_db.client, web_db.admin()
    created = client.post(
        "/api/webhooks/endpoints",
        headers=auth,
        json={"url": httpserver.url_for("/hook"), "events": ["subscriber.unsubscribed"]},
    )
    assert created.status_code == 201, created.text
    endpoint, secret = created.json()["endpoint"], created.json()["secret"]
    assert endpoint["events"] == ["subscriber.unsubscribed"] and endpoint["enabled"] is True
    assert "secret" not in endpoint
    path = f"/api/webhooks/endpoints/{endpoint['id']}"
    assert client.get(f"{path}/secret", headers=auth).json() == {"secret": secret}
    assert [item["id"] for item in client.get("/api/webhooks/endpoints", headers=auth).json()] == [
        endpoint["id"]
    ]

    # an unsubscribe through the API is queued, then posted by a worker
    client.post(
        "/api/subscribers", headers=auth, json={"email": "a@example.com", "confirmed": True}
    )
    left = client.post("/api/unsubscribes", headers=auth, json={"email": "a@example.com"})
    assert left.status_code == 200
    assert client.get(path, headers=auth).json()["pending"] == 1
    hooks = web_db.app.webhook_sender(web_db.clock)
    assert hooks.deliver_due().delivered == 1
    hooks.close()
    (request, _), *_ = httpserver.log
    body = Webhook(secret).verify(request.get_data(as_text=True), dict(request.headers))
    assert body["type"] == "subscriber.unsubscribed"
    assert body["data"]["via"] == "api"

    tested = client.post(f"{path}/test", headers=auth).json()
    assert tested["delivered"] is True and tested["status"] == 200

    changed = client.patch(path, headers=auth, json={"enabled": False})
    assert changed.json()["enabled"] is False
    assert changed.json()["disabled_reason"] == "disabled by an operator"
    bad = client.patch(path, headers=auth, json={"url": "mailto:x@example.com"})
    assert bad.status_code == 422 and "http" in bad.json()["error"]
    unknown_event = client.post(
        "/api/webhooks/endpoints",
        headers=auth,
        json={"url": "https://example.com/h", "events": ["edition.done"]},
    )
    assert unknown_event.status_code == 422
    assert client.delete(path, headers=auth).json() == {"dropped": 0}
    assert client.get(path, headers=auth).status_code == 404
    assert client.get(f"{path}/secret").status_code == 401


def test_confirming_and_one_click_leaving_on_the_web_are_events(web: Web) -> None:
    auth = web.admin()
    web.client.post(
        "/api/webhooks/endpoints", headers=auth, json={"url": "https://hooks.example.com/h"}
    )
    web.subscribed("reader@example.com")
    unsubscribe = list_unsubscribe_url(web.last_mail_to("reader@example.com", "Welcome"))
    answer = web.client.post(path_of(unsubscribe), data={"List-Unsubscribe": "One-Click"})
    assert answer.status_code == 200
    with web.app.database.transaction(readonly=True) as session:
        rows = session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)).all()
    bodies: list[dict[str, Any]] = [json.loads(row.payload) for row in rows]
    assert [body["type"] for body in bodies] == ["subscriber.confirmed", "subscriber.unsubscribed"]
    assert bodies[0]["data"]["via"] == "confirm"
    assert bodies[0]["timestamp"] == FIXED_NOW.isoformat()
    assert all(body["data"]["subscriber"]["email"] == "reader@example.com" for body in bodies)
    assert all(row.subscriber_id == bodies[0]["data"]["subscriber"]["id"] for row in rows)


def test_the_openapi_schema_covers_the_endpoints(web: Web, tmp_path: Path) -> None:
    schema = web.client.get("/api/openapi.json").json()
    paths = schema["paths"]
    assert set(paths["/api/webhooks/endpoints"]) == {"get", "post"}
    assert set(paths["/api/webhooks/endpoints/{endpoint_id}"]) == {"get", "patch", "delete"}
    assert "post" in paths["/api/webhooks/endpoints/{endpoint_id}/test"]
    assert "get" in paths["/api/webhooks/endpoints/{endpoint_id}/secret"]
    events = schema["components"]["schemas"]["WebhookEvent"]["enum"]
    assert events == [
        "subscriber.confirmed",
        "subscriber.unsubscribed",
        "subscriber.suppressed",
        "edition.sent",
        "delivery.bounced",
        "delivery.complained",
    ]


def test_newsletter_worker_posts_the_webhooks(
    make_settings: Callable[..., object], sqlite_url: str, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    assert invoke(sqlite_url, "add", httpserver.url_for("/hook")).exit_code == 0
    env = {"NEWSLETTER_CONFIG": "examples/demo.toml", "NEWSLETTER_DATABASE_URL": sqlite_url}
    runner = CliRunner()
    added = runner.invoke(cli, ["subscribers", "add", "ada@example.org", "--confirmed"], env=env)
    assert added.exit_code == 0, added.output
    worked = runner.invoke(cli, ["worker", "--exit-when-idle"], env=env)
    assert worked.exit_code == 0, worked.output
    assert "Webhooks: 1 delivered, 0 failed attempts" in worked.stdout
    (request, _), *_ = httpserver.log
    assert json.loads(request.get_data(as_text=True))["type"] == "subscriber.confirmed"


def test_a_providers_bounce_posted_to_the_incoming_webhook_is_an_outgoing_event(
    web_factory: Callable[..., Web], database_url: str
) -> None:
    secret = "webhook-secret-0123456789abcdef-0123456789"
    web = web_factory(database_url, webhook_secret=secret)
    web.client.post(
        "/api/webhooks/endpoints",
        headers=web.admin(),
        json={"url": "https://hooks.example.com/h", "events": ["delivery.bounced"]},
    )
    with web.app.database.transaction() as session:
        add_subscriber(session, "gone@example.org", confirmed=True)
    answer = web.client.post(
        "/api/webhooks/bounces",
        headers={"Authorization": f"Bearer {secret}"},
        json=provider_payloads.postmark_bounce("gone@example.org"),
    )
    assert answer.status_code == 200, answer.text
    with web.app.database.transaction(readonly=True) as session:
        (payload,) = session.scalars(select(WebhookDelivery.payload)).all()
    body = json.loads(payload)
    assert body["type"] == "delivery.bounced"
    assert body["data"]["subscriber"]["email"] == "gone@example.org"
    assert body["data"]["kind"] == "hard"
