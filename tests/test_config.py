"""Settings: environment over file over defaults, and clear errors for bad values."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from newsletter.config import Settings, load_settings
from newsletter.errors import ConfigError


@pytest.fixture
def clean_env(make_settings: Callable[..., Settings]) -> None:
    """make_settings clears NEWSLETTER_* variables from the environment for the test."""


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.usefixtures("clean_env")
def test_defaults_are_the_embedded_setup() -> None:
    settings = load_settings()
    assert settings.database_url == "sqlite:///var/newsletter.db"
    assert settings.transport == "folder"
    assert str(settings.outbox_dir) == "var/outbox"
    assert settings.send_time == "07:00"


@pytest.mark.usefixtures("clean_env")
def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write(
        tmp_path / "settings.toml",
        'transport = "smtp"\nsmtp_port = 2525\nfrom = "File <file@example.org>"\n'
        '[market]\nvs_currency = "eur"\n[[feeds]]\nname = "A"\nurl = "https://a.example/feed"\n',
    )
    monkeypatch.setenv("NEWSLETTER_CONFIG", str(config))
    monkeypatch.setenv("NEWSLETTER_SMTP_PORT", "587")
    monkeypatch.setenv("NEWSLETTER_FROM", "Env <env@example.net>")
    monkeypatch.setenv("NEWSLETTER_MARKET__VS_CURRENCY", "gbp")
    settings = load_settings()
    assert settings.transport == "smtp"
    assert settings.smtp_port == 587
    assert settings.from_address == "env@example.net"
    assert settings.market.vs_currency == "gbp"
    assert [feed.name for feed in settings.feeds] == ["A"]


@pytest.mark.usefixtures("clean_env")
def test_bare_from_variable_is_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FROM", "Someone <someone@example.org>")
    assert load_settings().from_address == "digest@example.com"


@pytest.mark.usefixtures("clean_env")
def test_derived_values_follow_the_from_address() -> None:
    settings = load_settings(sender="News <news@letters.example.org>")
    assert settings.list_id_value == "daily.letters.example.org"
    assert settings.unsubscribe_address == "unsubscribe@letters.example.org"
    assert settings.envelope_sender == "news@letters.example.org"


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"timezone": "Mars/Olympus"}, "NEWSLETTER_TIMEZONE"),
        ({"send_time": "25:00"}, "NEWSLETTER_SEND_TIME"),
        ({"send_time": "7am"}, "NEWSLETTER_SEND_TIME"),
        ({"transport": "pigeon"}, "NEWSLETTER_TRANSPORT"),
        ({"smtp_tls": "maybe"}, "NEWSLETTER_SMTP_TLS"),
        ({"sender": "no address here"}, "NEWSLETTER_FROM"),
        ({"base_url": "ftp://example.org"}, "NEWSLETTER_BASE_URL"),
    ],
)
def test_invalid_values_are_named(values: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(**values)
    assert named in str(raised.value)


@pytest.mark.usefixtures("clean_env")
def test_unknown_key_in_file_is_refused(tmp_path: Path) -> None:
    config = write(tmp_path / "settings.toml", 'databse_url = "sqlite:///x.db"\n')
    with pytest.raises(ConfigError, match="databse_url"):
        load_settings(config)


@pytest.mark.usefixtures("clean_env")
def test_missing_and_broken_files_are_explained(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")
    broken = write(tmp_path / "broken.toml", "transport = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(broken)


@pytest.mark.usefixtures("clean_env")
def test_secrets_are_masked_in_the_printed_settings() -> None:
    settings = load_settings(smtp_password="hunter2", secret_key="s3cret-value")
    printed = str(settings.redacted())
    assert "hunter2" not in printed
    assert "s3cret-value" not in printed
