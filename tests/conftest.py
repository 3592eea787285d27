"""Shared fixtures: real databases (SQLite and PostgreSQL), a real SMTP server, settings and apps."""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import OperationalError

from kernel import Base
from newsletter import migrate
from newsletter.bootstrap import App, bootstrap
from newsletter.config import Settings, load_settings
from newsletter.db import Database
from newsletter.screenshot import CHROMIUM

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
#: Where the browser tests look for Chromium instead of the product's default path.
CHROMIUM_ENV = "NEWSLETTER_TEST_CHROMIUM"
FIXED_NOW = datetime(2026, 11, 24, 6, 30, tzinfo=UTC)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite the golden files from the current output instead of comparing",
    )


def unavailable(reason: str) -> NoReturn:
    """A peer a test needs is missing: skip with the reason, except in CI (CI=true), where it fails."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


# a real browser


def chromium_path() -> str:
    """The Chromium the browser tests drive: ``$NEWSLETTER_TEST_CHROMIUM``, else the product's default."""
    return os.environ.get(CHROMIUM_ENV) or CHROMIUM


def require_chromium() -> str:
    """The Chromium executable and Playwright, or a one-line skip (a failure in CI)."""
    path = chromium_path()
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        unavailable(
            f"no Chromium at {path}: install Debian's chromium package (or set {CHROMIUM_ENV})"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        unavailable("the playwright package is not installed: run make install-test")
    return path


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Every test marked ``browser`` needs Chromium: one check, before any of its fixtures."""
    if item.get_closest_marker("browser") is not None:
        require_chromium()


@pytest.fixture(scope="session")
def chromium() -> str:
    """The path of the Chromium executable to launch."""
    return require_chromium()


# databases


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file; each test gets a copy (migrating once keeps the suite fast)."""
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    database = Database.from_url(f"sqlite:///{path}")
    migrate.upgrade(database)
    database.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A throwaway PostgreSQL database for this run, migrated; dropped at the end.

    Unreachable PostgreSQL skips the tests outside CI and fails them in CI (CI=true).
    """
    base = make_url(os.environ.get("NEWSLETTER_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    name = f"newsletter_test_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        reason = (
            f"PostgreSQL at {base.render_as_string(hide_password=True)} is unreachable: {exc.orig}"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(reason.splitlines()[0])
        pytest.skip(reason.splitlines()[0])
    url = base.set(database=name).render_as_string(hide_password=False)
    database = Database.from_url(url)
    migrate.upgrade(database)
    database.dispose()
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _truncate_postgres(url: str) -> None:
    engine = create_engine(url)
    tables = ", ".join(f'"{table.name}"' for table in reversed(Base.metadata.sorted_tables))
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    """A migrated, empty database of each kind."""
    if request.param == "sqlite":
        path = tmp_path / "newsletter.db"
        shutil.copyfile(sqlite_template, path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("postgres_server_url")
    _truncate_postgres(url)
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    """A migrated, empty SQLite database, for tests that are about something else than storage."""
    path = tmp_path / "newsletter.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


# settings and apps


@pytest.fixture
def make_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Settings]:
    """Settings on the demo data with a test database and outbox; keyword arguments override."""
    for name in list(os.environ):
        if name.startswith("NEWSLETTER_") and name != "NEWSLETTER_TEST_POSTGRES_URL":
            monkeypatch.delenv(name)

    def make(**overrides: Any) -> Settings:
        overrides.setdefault("outbox_dir", tmp_path / "outbox")
        return load_settings(EXAMPLES / "demo.toml", **overrides)

    monkeypatch.chdir(ROOT)
    return make


@pytest.fixture
def app_factory(make_settings: Callable[..., Settings]) -> Iterator[Callable[..., App]]:
    apps: list[App] = []

    def make(**overrides: Any) -> App:
        app = bootstrap(make_settings(**overrides))
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()


# a real SMTP server


@dataclass
class Received:
    sender: str
    recipients: list[str]
    data: bytes


@dataclass
class RecordingHandler:
    """Records accepted messages; ``replies`` maps a recipient to a scripted RCPT reply."""

    messages: list[Received] = field(default_factory=list)
    replies: dict[str, str] = field(default_factory=dict)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        reply = self.replies.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content)
        )
        return "250 Message accepted for delivery"


@dataclass
class SmtpServer:
    host: str
    port: int
    handler: RecordingHandler

    @property
    def messages(self) -> list[Received]:
        return self.handler.messages


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    handler = RecordingHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, decode_data=False)
    controller.start()
    try:
        yield SmtpServer("127.0.0.1", port, handler)
    finally:
        controller.stop()
