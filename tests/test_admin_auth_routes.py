"""Admin auth on every route: walk the app's own route table, so that a new or changed ``/api`` route
without the bearer check fails here, whatever its method or path parameters.

Each route is called with no token, a wrong token, and the right token in Basic auth; each must answer
401 with ``WWW-Authenticate: Bearer``, change nothing and show no address.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from tests.conftest import FIXED_NOW
from tests.web_fixtures import ADMIN_TOKEN, Web, web, web_factory

__all__ = ["web", "web_factory"]

EDITION = "2026-11-24"
ADDRESS = "planted.reader@example.com"
ANY_ADDRESS = re.compile(r"[\w.+'-]+@[\w-]+(\.[\w-]+)+")
PUBLIC = {"/api/openapi.json"}  # the schema says how to authenticate; it holds no data
# routes with a secret of their own instead of the admin token, each walked by its own test:
# the bounce webhook (NEWSLETTER_WEBHOOK_SECRET), tests/test_bounce_webhook.py
OWN_SECRET = {"/api/webhooks/bounces"}
PLAUSIBLE = {int: "1", datetime.date: EDITION, str: "x"}

UNAUTHORISED = {
    "none": {},
    "wrong": {"Authorization": "Bearer wrong-token-of-the-right-shape-0123456789"},
    "basic": {"Authorization": f"Basic {ADMIN_TOKEN}"},
    "empty": {"Authorization": "Bearer "},
}


def api_calls(fastapi: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path) under /api in the route table, path parameters filled plausibly.

    The table is walked as FastAPI itself walks it for the OpenAPI schema (included routers
    flattened), but routes left out of the schema are kept.
    """
    calls = []
    for context in iter_route_contexts(fastapi.routes):
        path = context.path or ""
        if not path.startswith("/api") or path in PUBLIC | OWN_SECRET:
            continue
        dependant = getattr(context, "dependant", None)
        kinds = {p.name: p.field_info.annotation for p in getattr(dependant, "path_params", [])}
        for name in re.findall(r"{(\w+)(?::\w+)?}", path):
            value = PLAUSIBLE.get(kinds.get(name) or str, "1")
            path = re.sub(r"{" + name + r"(?::\w+)?}", value, path)
        for method in sorted(context.methods or ()):
            if method != "HEAD":
                calls.append((method, path))
    return calls


def test_the_walk_finds_every_api_route(web: Web) -> None:
    calls = api_calls(web.fastapi)
    # a guard against a walk that silently finds nothing: the routes known today are all in it
    for known in [
        ("GET", "/api/subscribers"),
        ("GET", "/api/subscribers/export"),
        ("POST", "/api/subscribers/import"),
        ("DELETE", "/api/subscribers/1"),
        ("POST", "/api/privacy/export"),
        ("POST", "/api/privacy/erase"),
        ("GET", "/api/stats"),
        ("POST", f"/api/editions/{EDITION}/send"),
    ]:
        assert known in calls
    assert len(calls) >= 18


@pytest.mark.parametrize("headers", UNAUTHORISED.values(), ids=UNAUTHORISED.keys())
def test_admin_auth_on_every_route(web: Web, headers: dict[str, str]) -> None:
    web.client.post(
        "/api/subscribers", headers=web.admin(), json={"email": ADDRESS, "confirmed": True}
    )
    web.app.editions.build(edition_date=datetime.date.fromisoformat(EDITION), now=FIXED_NOW)
    body: dict[str, Any] = {"email": ADDRESS, "to": [ADDRESS], "token": "x"}
    calls = api_calls(web.fastapi)
    assert len(calls) >= 18, calls  # the walk found the routes (see the test above)
    for method, path in calls:
        answer = web.client.request(
            method,
            path,
            headers=headers,
            json=body,
            params={"wait": "true", "confirmed": "true"},
        )
        where = f"{method} {path}"
        assert answer.status_code == 401, (where, answer.status_code, answer.text[:200])
        assert answer.headers.get("www-authenticate") == "Bearer", where
        assert answer.json()["error"], where
        assert not ANY_ADDRESS.search(answer.text), (where, answer.text[:200])
    # nothing changed: the planted subscriber is still there and confirmed, nothing was sent
    subscriber = web.subscriber(ADDRESS)
    assert subscriber is not None and subscriber.status.value == "confirmed"
    assert web.messages() == []
