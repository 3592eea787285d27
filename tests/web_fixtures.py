"""Fixtures and helpers of the web tests: an app with a movable clock, its outbox, a form-filling client.

Import the fixtures into a test module with ``from tests.web_fixtures import *`` style names, e.g.
``from tests.web_fixtures import Web, web, web_db, web_factory``.
"""

from __future__ import annotations

import email
import email.policy
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from newsletter.bootstrap import App
from newsletter.web import create_app
from subscribers.errors import UnknownSubscriber
from subscribers.model import Subscriber
from subscribers.service import get_by_email
from tests.conftest import FIXED_NOW, free_port

ADMIN_TOKEN = "test-admin-token-0123456789"
BASE_URL = "http://testserver"

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_URL = re.compile(r"https?://[^\s<>\"']+")


class Clock:
    """The app's clock: tests move it instead of waiting."""

    def __init__(self, now: datetime = FIXED_NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def read_outbox(outbox: Path) -> list[EmailMessage]:
    """The messages of a Maildir outbox, oldest first."""
    folder = outbox / "new"
    if not folder.is_dir():
        return []
    files = sorted(folder.iterdir(), key=lambda path: (path.stat().st_mtime_ns, path.name))
    messages = []
    for path in files:
        parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        messages.append(parsed)
    return messages


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    content: str = part.get_content()  # type: ignore[attr-defined]
    return content


def links_in(message: EmailMessage) -> list[str]:
    return _URL.findall(text_of(message))


def path_of(url: str) -> str:
    parsed = httpx.URL(url)
    return parsed.raw_path.decode()


def list_unsubscribe_url(message: EmailMessage) -> str:
    header = str(message["List-Unsubscribe"])
    match = re.search(r"<(https?://[^>]+)>", header)
    assert match, header
    return match.group(1)


@dataclass
class Web:
    """An app under test: its FastAPI app, a TestClient, the clock and the outbox."""

    app: App
    fastapi: FastAPI
    client: TestClient
    clock: Clock
    outbox: Path

    def messages(self) -> list[EmailMessage]:
        return read_outbox(self.outbox)

    def mails_to(self, address: str, subject: str | None = None) -> list[EmailMessage]:
        return [
            message
            for message in self.messages()
            if str(message["To"]).lower() == address.lower()
            and (subject is None or subject in str(message["Subject"]))
        ]

    def last_mail_to(self, address: str, subject: str | None = None) -> EmailMessage:
        found = self.mails_to(address, subject)
        assert found, (
            f"no mail to {address} ({subject}); outbox: {[m['Subject'] for m in self.messages()]}"
        )
        return found[-1]

    def csrf(self, path: str = "/") -> str:
        page = self.client.get(path)
        assert page.status_code == 200, page.text
        match = _CSRF.search(page.text)
        assert match, "no CSRF token on the page"
        return match.group(1)

    def subscribe(self, address: str, **fields: str) -> httpx.Response:
        data = {"email": address, "csrf_token": self.csrf("/"), **fields}
        return self.client.post("/subscribe", data=data, follow_redirects=False)

    def confirm_path(self, address: str) -> str:
        message = self.last_mail_to(address, "Confirm")
        return path_of(next(url for url in links_in(message) if "/confirm/" in url))

    def confirm(self, address: str) -> httpx.Response:
        path = self.confirm_path(address)
        return self.client.post(path, data={"csrf_token": self.csrf(path)})

    def subscribed(self, address: str) -> None:
        """Subscribe and confirm, as a person would."""
        assert self.subscribe(address).status_code == 303
        assert self.confirm(address).status_code == 200

    def subscriber(self, address: str) -> Subscriber | None:
        with self.app.database.transaction(readonly=True) as session:
            try:
                return get_by_email(session, address)
            except UnknownSubscriber:
                return None

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def web_factory(app_factory: Callable[..., App]) -> Iterator[Callable[..., Web]]:
    clients: list[TestClient] = []

    def make(database_url: str, *, clock: Clock | None = None, **overrides: Any) -> Web:
        overrides.setdefault("base_url", BASE_URL)
        overrides.setdefault("admin_token", ADMIN_TOKEN)
        app = app_factory(database_url=database_url, **overrides)
        clock = clock or Clock()
        fastapi = create_app(app, clock=clock)
        client = TestClient(fastapi, base_url=BASE_URL)
        client.__enter__()
        clients.append(client)
        return Web(app, fastapi, client, clock, Path(app.settings.outbox_dir))

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def web(web_factory: Callable[..., Web], sqlite_url: str) -> Web:
    """The web app on SQLite."""
    return web_factory(sqlite_url)


@pytest.fixture
def web_db(web_factory: Callable[..., Web], database_url: str) -> Web:
    """The web app on SQLite and on PostgreSQL."""
    return web_factory(database_url)


@dataclass
class LiveServer:
    url: str
    server: uvicorn.Server
    thread: threading.Thread


def serve(fastapi: FastAPI, port: int) -> LiveServer:
    """Run ``fastapi`` with uvicorn on 127.0.0.1:port in a thread; return once it accepts requests."""
    config = uvicorn.Config(
        fastapi, host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    return LiveServer(f"http://127.0.0.1:{port}", server, thread)


def stop(live: LiveServer) -> None:
    live.server.should_exit = True
    live.thread.join(timeout=10)


__all__ = [
    "ADMIN_TOKEN",
    "BASE_URL",
    "Clock",
    "LiveServer",
    "Web",
    "free_port",
    "links_in",
    "list_unsubscribe_url",
    "path_of",
    "read_outbox",
    "serve",
    "stop",
    "text_of",
    "web",
    "web_db",
    "web_factory",
]
