"""Each signed link does one thing, over real HTTP: a confirmation link confirms (by POST only), an
unsubscribe link unsubscribes, a preferences link opens the preferences; none works at another door,
and a used confirmation link hands out no personal link."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from newsletter.bootstrap import App
from newsletter.web import create_app
from subscribers.errors import UnknownSubscriber
from subscribers.model import SubscriberStatus
from subscribers.service import get_by_email
from tests.web_fixtures import (
    Clock,
    LiveServer,
    free_port,
    links_in,
    list_unsubscribe_url,
    path_of,
    read_outbox,
    serve,
    stop,
)

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
#: A link that acts on one person: a path with a token after it.
PERSONAL_LINK = re.compile(r"/(?:preferences|unsubscribe|resubscribe|confirm)/[\w.\-]{8,}")
READER = "reader@example.com"


@dataclass
class Site:
    app: App
    server: LiveServer
    http: httpx.Client

    @property
    def outbox(self) -> Path:
        return Path(self.app.settings.outbox_dir)

    def csrf(self, path: str) -> str:
        page = self.http.get(path)
        assert page.status_code == 200, page.text
        match = _CSRF.search(page.text)
        assert match, f"no CSRF token on {path}"
        return match.group(1)

    def status(self, address: str) -> SubscriberStatus | None:
        with self.app.database.transaction(readonly=True) as session:
            try:
                return get_by_email(session, address).status
            except UnknownSubscriber:
                return None

    def mail(self, address: str, subject: str) -> EmailMessage:
        """Mail leaves just after the page answers (a background task): wait for it."""
        deadline = time.monotonic() + 15
        while True:
            found = [
                message
                for message in read_outbox(self.outbox)
                if str(message["To"]).lower() == address and subject in str(message["Subject"])
            ]
            if found:
                return found[-1]
            assert time.monotonic() < deadline, f"no mail '{subject}' to {address}"
            time.sleep(0.05)

    def subscribe(self, address: str) -> str:
        """Subscribe through the form; the path of the confirmation link that arrives."""
        answer = self.http.post("/subscribe", data={"email": address, "csrf_token": self.csrf("/")})
        assert answer.status_code == 303, answer.text
        message = self.mail(address, "Confirm")
        return path_of(next(url for url in links_in(message) if "/confirm/" in url))

    def press_confirm(self, path: str) -> httpx.Response:
        return self.http.post(path, data={"csrf_token": self.csrf("/")})

    def subscribed(self, address: str) -> tuple[str, str, str]:
        """Subscribe and confirm; the paths of the confirmation, unsubscribe and preferences links."""
        confirm = self.subscribe(address)
        assert self.press_confirm(confirm).status_code == 200
        welcome = self.mail(address, "Welcome")
        unsubscribe = path_of(list_unsubscribe_url(welcome))
        preferences = path_of(next(url for url in links_in(welcome) if "/preferences/" in url))
        return confirm, unsubscribe, preferences


@pytest.fixture
def site(app_factory: Callable[..., App], sqlite_url: str) -> Iterator[Site]:
    port = free_port()
    app = app_factory(database_url=sqlite_url, base_url=f"http://127.0.0.1:{port}")
    server = serve(create_app(app, clock=Clock()), port)
    try:
        with httpx.Client(base_url=server.url, timeout=15) as http:
            yield Site(app, server, http)
    finally:
        stop(server)


def test_gap_a_get_on_the_confirmation_link_does_not_confirm(site: Site) -> None:
    confirm = site.subscribe(READER)
    for _ in range(2):  # a mail scanner may fetch it more than once
        page = site.http.get(confirm)
        assert page.status_code == 200
        assert "<form" in page.text
    head = site.http.head(confirm)
    assert head.status_code in (200, 405)
    assert site.status(READER) is SubscriberStatus.PENDING
    assert site.press_confirm(confirm).status_code == 200
    assert site.status(READER) is SubscriberStatus.CONFIRMED


def test_gap_a_confirmation_token_works_at_no_other_door(site: Site) -> None:
    confirm, _, _ = site.subscribed(READER)
    token = confirm.rsplit("/", 1)[1]
    for path in (f"/unsubscribe/{token}", f"/preferences/{token}"):
        page = site.http.get(path)
        assert page.status_code == 400, (path, page.status_code)
        assert READER not in page.text
    one_click = site.http.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 400
    saved = site.http.post(
        f"/preferences/{token}",
        data={"csrf_token": site.csrf("/"), "format": "text", "paused": "on"},
    )
    assert saved.status_code == 400
    comeback = site.http.post(f"/resubscribe/{token}", data={"csrf_token": site.csrf("/")})
    assert comeback.status_code == 400
    assert site.status(READER) is SubscriberStatus.CONFIRMED


def test_gap_unsubscribe_and_preferences_tokens_work_only_at_their_own_door(site: Site) -> None:
    other = "other@example.com"
    site.subscribe(other)  # pending: a confirmation token accepted by mistake would confirm it
    _, unsubscribe, preferences = site.subscribed(READER)
    unsubscribe_token = unsubscribe.rsplit("/", 1)[1]
    preferences_token = preferences.rsplit("/", 1)[1]
    for token in (unsubscribe_token, preferences_token):
        assert site.http.get(f"/confirm/{token}").status_code == 400
        assert site.press_confirm(f"/confirm/{token}").status_code == 400
    page = site.http.get(f"/preferences/{unsubscribe_token}")
    assert page.status_code == 400
    assert READER not in page.text
    one_click = site.http.post(
        f"/unsubscribe/{preferences_token}", data={"List-Unsubscribe": "One-Click"}
    )
    assert one_click.status_code == 400
    assert site.status(READER) is SubscriberStatus.CONFIRMED
    assert site.status(other) is SubscriberStatus.PENDING
    # each at its own door works
    assert READER in site.http.get(preferences).text
    left = site.http.post(unsubscribe, data={"List-Unsubscribe": "One-Click"})
    assert left.status_code == 200
    assert site.status(READER) is SubscriberStatus.UNSUBSCRIBED


def test_finding_9_a_used_confirmation_link_hands_out_no_personal_link(site: Site) -> None:
    confirm = site.subscribe(READER)
    assert site.press_confirm(confirm).status_code == 200
    assert site.status(READER) is SubscriberStatus.CONFIRMED
    again = site.http.get(confirm)
    assert again.status_code == 200
    assert "already" in again.text.lower()
    assert not PERSONAL_LINK.search(again.text), PERSONAL_LINK.findall(again.text)
    pressed_again = site.press_confirm(confirm)
    assert not PERSONAL_LINK.search(pressed_again.text), PERSONAL_LINK.findall(pressed_again.text)
    assert "already" in pressed_again.text.lower()
    assert site.status(READER) is SubscriberStatus.CONFIRMED
