"""The secrets that guard the web and the links: admin token, secret key, fallback keys after a rotation."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from newsletter.bootstrap import App
from newsletter.config import Settings
from newsletter.errors import ConfigError
from newsletter.web import create_app
from tests.web_fixtures import BASE_URL

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
