"""The secrets that guard the web and the links: admin token, secret key, fallback keys after a rotation."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from newsletter.bootstrap import App
from newsletter.config import Settings, load_settings
from newsletter.errors import ConfigError
from newsletter.web import create_app
from subscribers.errors import BadToken
from subscribers.model import SubscriberStatus
from subscribers.tokens import UNSUBSCRIBE, TokenSigner
from tests.web_fixtures import (
    BASE_URL,
    Web,
    links_in,
    list_unsubscribe_url,
    path_of,
    web_factory,
)

__all__ = ["web_factory"]  # a fixture used below

READER = "reader@example.com"

LONG_KEY = "k" * 32
LONG_TOKEN = "t" * 32


def _client(app: App) -> TestClient:
    return TestClient(create_app(app), base_url=BASE_URL)


@pytest.mark.parametrize("demo", [True, False])
def test_finding_1_an_empty_admin_token_turns_the_api_off(
    app_factory: Callable[..., App],
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
    demo: bool,
) -> None:
    monkeypatch.setenv("NEWSLETTER_ADMIN_TOKEN", "")
    app = app_factory(database_url=sqlite_url, demo=demo, secret_key=LONG_KEY)
    with _client(app) as client:
        for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer x"}):
            answer = client.get("/api/subscribers", headers=headers)
            assert answer.status_code == 401, (headers, answer.text)
            assert answer.headers["www-authenticate"] == "Bearer"
            assert "the admin API is off" in answer.json()["error"]
            assert "NEWSLETTER_ADMIN_TOKEN" in answer.json()["error"]
    assert app.settings.admin_token is None


def test_finding_1_a_blank_admin_token_turns_the_api_off_too(
    app_factory: Callable[..., App], sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSLETTER_ADMIN_TOKEN", "   ")
    app = app_factory(database_url=sqlite_url, demo=False, secret_key=LONG_KEY)
    assert app.settings.admin_token is None
    with _client(app) as client:
        assert client.get("/api/stats", headers={"Authorization": "Bearer    "}).status_code == 401


def test_finding_1_the_app_says_at_start_up_that_the_api_is_off(
    app_factory: Callable[..., App], sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="newsletter.web.app"):
        create_app(app_factory(database_url=sqlite_url, admin_token=None))
    assert any(
        "admin API" in record.getMessage() and "NEWSLETTER_ADMIN_TOKEN" in record.getMessage()
        for record in caplog.records
    ), caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="newsletter.web.app"):
        create_app(app_factory(database_url=sqlite_url, admin_token=LONG_TOKEN))
    assert not any("admin API" in record.getMessage() for record in caplog.records)


def test_finding_1_a_short_admin_token_is_refused_outside_the_demo(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSLETTER_ADMIN_TOKEN", "t" * 31)
    with pytest.raises(ConfigError, match=r"NEWSLETTER_ADMIN_TOKEN.*32 characters"):
        make_settings(demo=False, secret_key=LONG_KEY)
    assert make_settings(demo=True).admin_token is not None  # the demo and the tests may use one
    monkeypatch.setenv("NEWSLETTER_ADMIN_TOKEN", LONG_TOKEN)
    settings = make_settings(demo=False, secret_key=LONG_KEY)
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == LONG_TOKEN


@pytest.mark.parametrize("key", ["s" * 31, "a-short-but-not-default-key", "é" * 15])
def test_finding_1_a_short_secret_key_is_refused_outside_the_demo(
    app_factory: Callable[..., App], sqlite_url: str, key: str
) -> None:
    app = app_factory(database_url=sqlite_url, demo=False, secret_key=key)
    with pytest.raises(ConfigError, match=r"NEWSLETTER_SECRET_KEY.*32 bytes"):
        create_app(app)
    smtp: dict[str, Any] = {"transport": "smtp", "postal_address": "1 Example Street"}
    sending = app_factory(database_url=sqlite_url, demo=False, secret_key=key, **smtp)
    with pytest.raises(ConfigError, match=r"NEWSLETTER_SECRET_KEY.*32 bytes"):
        sending.check_can_send()
    # 32 bytes is enough, however many characters; the demo accepts anything
    create_app(app_factory(database_url=sqlite_url, demo=False, secret_key="é" * 16))
    app_factory(database_url=sqlite_url, demo=False, secret_key=LONG_KEY, **smtp).check_can_send()
    create_app(app_factory(database_url=sqlite_url, demo=True, secret_key="short"))


OLD_KEY = "old-" + "o" * 40
NEW_KEY = "new-" + "n" * 40


def test_finding_13_links_in_mails_sent_before_a_key_rotation_keep_working(
    web_factory: Callable[..., Web], sqlite_url: str
) -> None:
    before = web_factory(sqlite_url, secret_key=OLD_KEY)
    before.subscribed(READER)
    welcome = before.last_mail_to(READER, "Welcome")
    unsubscribe = path_of(list_unsubscribe_url(welcome))
    preferences = path_of(next(url for url in links_in(welcome) if "/preferences/" in url))

    rotated_without_fallback = web_factory(sqlite_url, secret_key=NEW_KEY)
    assert rotated_without_fallback.client.get(preferences).status_code == 400

    after = web_factory(sqlite_url, secret_key=NEW_KEY, secret_key_fallbacks=[OLD_KEY])
    page = after.client.get(preferences)
    assert page.status_code == 200
    assert READER in page.text
    left = after.client.post(unsubscribe, data={"List-Unsubscribe": "One-Click"})
    assert left.status_code == 200
    assert after.subscriber(READER).status is SubscriberStatus.UNSUBSCRIBED  # type: ignore[union-attr]


def test_finding_13_new_links_are_signed_with_the_current_key_only(
    web_factory: Callable[..., Web], sqlite_url: str
) -> None:
    web = web_factory(sqlite_url, secret_key=NEW_KEY, secret_key_fallbacks=[OLD_KEY])
    web.subscribed(READER)
    subscriber = web.subscriber(READER)
    assert subscriber is not None
    token = path_of(list_unsubscribe_url(web.last_mail_to(READER, "Welcome"))).rsplit("/", 1)[1]
    assert TokenSigner(NEW_KEY).verify(token, UNSUBSCRIBE) == subscriber.id
    with pytest.raises(BadToken):
        TokenSigner(OLD_KEY).verify(token, UNSUBSCRIBE)
    assert web.subscribe("late@example.com").status_code == 303
    confirm = web.confirm_path("late@example.com")
    confirm_token = confirm.rsplit("/", 1)[1]
    TokenSigner(NEW_KEY).read_confirmation(confirm_token, max_age_seconds=3600, now=web.clock())
    with pytest.raises(BadToken):
        TokenSigner(OLD_KEY).read_confirmation(confirm_token, max_age_seconds=3600, now=web.clock())


@pytest.mark.parametrize(
    "raw",
    [f"{OLD_KEY},{LONG_KEY}", f" {OLD_KEY} , {LONG_KEY} ", f'["{OLD_KEY}", "{LONG_KEY}"]'],
)
def test_finding_13_fallback_keys_from_the_environment(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY_FALLBACKS", raw)
    settings = make_settings()
    assert [key.get_secret_value() for key in settings.secret_key_fallbacks] == [
        OLD_KEY,
        LONG_KEY,
    ]
    assert OLD_KEY not in str(settings.redacted())


def test_finding_13_fallback_keys_from_the_file(
    make_settings: Callable[..., Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "settings.toml"
    config.write_text(f'secret_key_fallbacks = ["{OLD_KEY}"]\n', encoding="utf-8")
    monkeypatch.setenv("NEWSLETTER_CONFIG", str(config))
    settings = load_settings()
    assert [key.get_secret_value() for key in settings.secret_key_fallbacks] == [OLD_KEY]
    monkeypatch.delenv("NEWSLETTER_CONFIG")
    assert make_settings().secret_key_fallbacks == ()


def test_finding_13_a_short_fallback_key_is_refused_outside_the_demo(
    app_factory: Callable[..., App], sqlite_url: str
) -> None:
    app = app_factory(
        database_url=sqlite_url, demo=False, secret_key=NEW_KEY, secret_key_fallbacks=["short"]
    )
    with pytest.raises(ConfigError, match=r"NEWSLETTER_SECRET_KEY_FALLBACKS.*32 bytes"):
        create_app(app)
