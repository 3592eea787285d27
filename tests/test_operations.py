"""Manual operations: test sends to several addresses, dry runs, follow-ups, statistics, JSON logs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from newsletter.cli import cli
from newsletter.config import Settings
from tests.conftest import SmtpServer

DAY = "2026-11-24"


@pytest.fixture
def run(
    make_settings: Callable[..., Settings], sqlite_url: str, tmp_path: Path
) -> Callable[..., Result]:
    base = {
        "NEWSLETTER_CONFIG": "examples/demo.toml",
        "NEWSLETTER_DATABASE_URL": sqlite_url,
        "NEWSLETTER_OUTBOX_DIR": str(tmp_path / "outbox"),
    }

    def invoke(*args: str, **env: str) -> Result:
        return CliRunner().invoke(cli, list(args), env=base | env, catch_exceptions=False)

    return invoke


def outbox(tmp_path: Path) -> int:
    box = tmp_path / "outbox" / "new"
    return len(list(box.iterdir())) if box.exists() else 0


def test_test_copies_to_several_addresses(
    run: Callable[..., Result], smtp_server: SmtpServer
) -> None:
    assert run("fetch").exit_code == 0
    assert run("issue", "build", "--date", DAY).exit_code == 0
    smtp = {
        "NEWSLETTER_TRANSPORT": "smtp",
        "NEWSLETTER_SMTP_HOST": smtp_server.host,
        "NEWSLETTER_SMTP_PORT": str(smtp_server.port),
    }
    result = run("send", "--date", DAY, "--to", "a@example.org", "--to", "b@example.org", **smtp)
    assert result.exit_code == 0, result.output
    assert sorted(message.recipients[0] for message in smtp_server.messages) == [
        "a@example.org",
        "b@example.org",
    ]


def test_dry_run_counts_recipients_and_variants(run: Callable[..., Result], tmp_path: Path) -> None:
    run("subscribers", "import", "examples/subscribers.csv", "--confirmed")
    output = run("send", "--date", DAY, "--dry-run").stdout
    assert "24 confirmed subscribers, 24 would be sent" in output
    assert "1 content variants" in output
    assert outbox(tmp_path) == 0


def test_follow_up_reaches_only_those_who_confirmed_after(
    run: Callable[..., Result], tmp_path: Path
) -> None:
    run("subscribers", "add", "early@example.com", "--confirmed")
    run("fetch")
    assert run("send", "--date", DAY).exit_code == 0
    assert outbox(tmp_path) == 1
    run("subscribers", "add", "late@example.com", "--confirmed")
    assert "already sent" in run("send", "--date", DAY).stdout
    follow = run("send", "--date", DAY, "--follow-up")
    assert follow.exit_code == 0, follow.output
    assert outbox(tmp_path) == 2
    again = run("send", "--date", DAY, "--follow-up")
    assert outbox(tmp_path) == 2, again.output  # nobody new: nothing sent twice


def test_edition_statistics(run: Callable[..., Result]) -> None:
    run("subscribers", "import", "examples/subscribers.csv", "--confirmed")
    run("fetch")
    run("send", "--date", DAY)
    stats = run("issue", "stats", "--date", DAY)
    assert stats.exit_code == 0, stats.output
    assert "sent" in stats.stdout and "24" in stats.stdout
    assert "unsubscribes attributed" in stats.stdout


def test_json_logs(run: Callable[..., Result]) -> None:
    result = run("-v", "fetch", NEWSLETTER_LOG_FORMAT="json")
    lines = [line for line in result.stderr.splitlines() if line.startswith("{")]
    assert lines, result.stderr
    entry = json.loads(lines[0])
    assert set(entry) >= {"time", "level", "logger", "message"}
