"""The command line, in-process through CliRunner, against a real database, Maildir and SMTP server."""

from __future__ import annotations

import csv
import email
import email.policy
import io
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from newsletter import screenshot
from newsletter.cli import cli
from newsletter.config import Settings
from tests.conftest import SmtpServer, free_port

EDITION = "2026-11-24"


@pytest.fixture
def run(
    make_settings: Callable[..., Settings],
    sqlite_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., Result]:
    """Invoke ``newsletter`` on the demo configuration with a test database and outbox."""
    monkeypatch.setenv("NEWSLETTER_CONFIG", "examples/demo.toml")
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("NEWSLETTER_OUTBOX_DIR", str(tmp_path / "outbox"))

    def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
        return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)

    return invoke


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output
    return result


def no_traceback(result: Result) -> None:
    assert "Traceback" not in result.output


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_help_lists_the_commands(run: Callable[..., Result]) -> None:
    output = ok(run("--help")).output
    for command in ("db", "subscribers", "fetch", "issue", "send", "demo"):
        assert command in output


def test_subscribers_add_and_list(run: Callable[..., Result]) -> None:
    assert (
        "Added Reader@example.com (confirmed)"
        in ok(run("subscribers", "add", "Reader@Example.COM", "--confirmed")).output
    )
    assert "already on the list" in ok(run("subscribers", "add", "reader@example.com")).output
    listed = ok(run("subscribers", "list"))
    assert "Reader@example.com\tconfirmed" in listed.stdout
    assert "1 subscribers (1 confirmed)" in listed.stderr


def test_invalid_address_is_a_clear_error(run: Callable[..., Result]) -> None:
    result = run("subscribers", "add", "not-an-address")
    assert result.exit_code == 2
    assert "is not a valid email address" in result.stderr
    no_traceback(result)


def test_import_reports_each_bad_row_and_keeps_the_good(
    run: Callable[..., Result], tmp_path: Path
) -> None:
    source = write_csv(
        tmp_path / "list.csv",
        "email,name,timezone\n"
        "ana@example.com,Ana,Europe/Lisbon\n"
        "broken-address,Bad,\n"
        "bo@example.org,Bo,Mars/Base\n"
        "cy@example.net,Cy\n"
        "ANA@example.com,Ana again,\n"
        "dee@example.com,Dee,\n",
    )
    result = ok(run("subscribers", "import", str(source), "--confirmed"))
    assert "added" in result.stdout and "2" in result.stdout
    errors = result.stderr
    assert "line 3: broken-address:" in errors
    assert "line 4: bo@example.org: unknown time zone 'Mars/Base'" in errors
    assert "line 5: cy@example.net: has 2 fields where the header has 3" in errors
    assert "line 6: ANA@example.com: duplicate of line 2" in errors
    again = ok(run("subscribers", "import", str(source), "--confirmed"))
    assert "already present" in again.stdout
    listed = ok(run("subscribers", "list")).stdout
    assert sorted(line.split("\t")[0] for line in listed.splitlines()) == [
        "ana@example.com",
        "dee@example.com",
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        ("name,timezone\nAna,UTC\n", "has no 'email' column"),
        ("", "is empty"),
    ],
)
def test_unusable_import_file(
    run: Callable[..., Result], tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "list.csv"
    if content is not None:
        write_csv(path, content)
    result = run("subscribers", "import", str(path))
    assert result.exit_code == 2
    assert message in result.stderr
    no_traceback(result)


def test_export_round_trips(run: Callable[..., Result], tmp_path: Path) -> None:
    ok(run("subscribers", "import", "examples/subscribers.csv", "--confirmed"))
    target = tmp_path / "export.csv"
    ok(run("subscribers", "export", "--output", str(target)))
    rows = list(csv.DictReader(io.StringIO(target.read_text(encoding="utf-8"))))
    assert len(rows) == 24
    assert {row["status"] for row in rows} == {"confirmed"}
    stdout = ok(run("subscribers", "export")).stdout
    assert stdout.splitlines()[0] == "email,name,status,timezone,created_at,confirmed_at"


def test_fetch_shows_each_source(run: Callable[..., Result]) -> None:
    output = ok(run("fetch")).stdout
    for name in ("market data", "Chainwire", "Ledger Daily", "DeFi Desk"):
        assert name in output


def test_fetch_reports_a_broken_feed_and_goes_on(
    run: Callable[..., Result], tmp_path: Path
) -> None:
    config = tmp_path / "broken.toml"
    demo = Path("examples/demo.toml").read_text(encoding="utf-8")
    config.write_text(
        demo + '\n[[feeds]]\nname = "Gone"\nurl = "examples/data/feeds/missing.xml"\n',
        encoding="utf-8",
    )
    result = ok(run("--config", str(config), "fetch"))
    assert "Gone" in result.stdout and "failed" in result.stdout
    assert "Chainwire" in result.stdout


def test_build_rebuild_and_preview(run: Callable[..., Result], tmp_path: Path) -> None:
    ok(run("fetch"))
    built = ok(run("issue", "build", "--date", EDITION)).stdout
    assert f"Built the edition of {EDITION}" in built
    assert "8 stories, 17 coins" in built
    assert (
        f"Rebuilt the edition of {EDITION}" in ok(run("issue", "build", "--date", EDITION)).stdout
    )
    target = tmp_path / "preview.html"
    printed = ok(run("issue", "preview", "--date", EDITION, "--output", str(target))).stdout.strip()
    assert printed == str(target)
    html = target.read_text(encoding="utf-8")
    assert 'style="' in html and "<script" not in html.lower()
    assert "__NL_" not in html


def test_bad_date_is_a_clear_error(run: Callable[..., Result]) -> None:
    result = run("issue", "build", "--date", "24/11/2026")
    assert result.exit_code == 2
    assert "is not a date; write it as YYYY-MM-DD" in result.stderr
    no_traceback(result)


def test_preview_of_a_missing_edition(run: Callable[..., Result]) -> None:
    result = run("issue", "preview", "--date", "2020-01-01")
    assert result.exit_code == 1
    assert "there is no edition for 2020-01-01" in result.stderr
    assert "newsletter issue build --date 2020-01-01" in result.stderr


def test_unknown_database_scheme(run: Callable[..., Result]) -> None:
    result = run(
        "subscribers", "list", env={"NEWSLETTER_DATABASE_URL": "mysql://root@localhost/news"}
    )
    assert result.exit_code == 1
    assert "unsupported database URL scheme 'mysql'" in result.stderr
    no_traceback(result)


def test_unmigrated_database(run: Callable[..., Result], tmp_path: Path) -> None:
    result = run(
        "subscribers", "list", env={"NEWSLETTER_DATABASE_URL": f"sqlite:///{tmp_path / 'new.db'}"}
    )
    assert result.exit_code == 1
    assert "newsletter db upgrade" in result.stderr
    ok(run("db", "upgrade", env={"NEWSLETTER_DATABASE_URL": f"sqlite:///{tmp_path / 'new.db'}"}))
    assert (
        "up to date"
        in ok(
            run(
                "db", "upgrade", env={"NEWSLETTER_DATABASE_URL": f"sqlite:///{tmp_path / 'new.db'}"}
            )
        ).stdout
    )


def test_invalid_setting_is_named(run: Callable[..., Result]) -> None:
    result = run("subscribers", "list", env={"NEWSLETTER_SEND_TIME": "7 o'clock"})
    assert result.exit_code == 2
    assert "NEWSLETTER_SEND_TIME" in result.stderr


def test_missing_template_is_a_clear_error(run: Callable[..., Result], tmp_path: Path) -> None:
    custom = tmp_path / "templates"
    custom.mkdir()
    (custom / "issue.html.j2").write_text(
        '{% include "partials/nowhere.html.j2" %}', encoding="utf-8"
    )
    ok(run("fetch"))
    result = run("issue", "build", "--date", EDITION, env={"NEWSLETTER_TEMPLATES_DIR": str(custom)})
    assert result.exit_code == 1
    assert "template partials/nowhere.html.j2 was not found" in result.stderr
    no_traceback(result)


def test_send_dry_run_sends_nothing(run: Callable[..., Result], tmp_path: Path) -> None:
    ok(run("subscribers", "import", "examples/subscribers.csv", "--confirmed"))
    output = ok(run("send", "--date", EDITION, "--dry-run")).stdout
    assert "24 confirmed subscribers, 24 would be sent" in output
    assert not (tmp_path / "outbox").exists()


def test_send_then_refuse_to_rebuild_a_sent_edition(
    run: Callable[..., Result], tmp_path: Path
) -> None:
    ok(run("subscribers", "import", "examples/subscribers.csv", "--confirmed"))
    ok(run("fetch"))
    sent = ok(run("send", "--date", EDITION))
    assert "sent now" in sent.stdout and "24" in sent.stdout
    assert len(list((tmp_path / "outbox" / "new").iterdir())) == 24
    again = ok(run("send", "--date", EDITION))
    assert f"The edition of {EDITION} was already sent" in again.stdout
    refused = run("issue", "build", "--date", EDITION)
    assert refused.exit_code == 1
    assert "is sent; what subscribers received cannot be rebuilt" in refused.stderr
    status = ok(run("issue", "status", "--date", EDITION)).stdout
    assert "sent" in status and "24 sent" in status


def test_test_send_goes_to_one_address_and_leaves_the_ledger(
    run: Callable[..., Result], smtp_server: SmtpServer
) -> None:
    ok(run("subscribers", "add", "reader@example.com", "--confirmed"))
    ok(run("fetch"))
    ok(run("issue", "build", "--date", EDITION))
    env = {
        "NEWSLETTER_TRANSPORT": "smtp",
        "NEWSLETTER_SMTP_HOST": smtp_server.host,
        "NEWSLETTER_SMTP_PORT": str(smtp_server.port),
    }
    result = ok(run("send", "--date", EDITION, "--to", "editor@example.org", env=env))
    assert "Sent a test copy" in result.stdout
    assert [message.recipients for message in smtp_server.messages] == [["editor@example.org"]]
    message = email.message_from_bytes(smtp_server.messages[0].data, policy=email.policy.default)
    # built now, from prices recorded on 24 Nov: the subject leaves the stale price out
    assert str(message["Subject"]).startswith("[Test] Daily Crypto Insights · ")
    status = ok(run("issue", "status", "--date", EDITION)).stdout
    assert "draft" in status and "0 sent" in status


def test_unreachable_smtp_host(run: Callable[..., Result]) -> None:
    ok(run("subscribers", "add", "reader@example.com", "--confirmed"))
    ok(run("fetch"))
    env = {
        "NEWSLETTER_TRANSPORT": "smtp",
        "NEWSLETTER_SMTP_HOST": "127.0.0.1",
        "NEWSLETTER_SMTP_PORT": str(free_port()),
    }
    result = run("send", "--date", EDITION, env=env)
    assert result.exit_code == 1
    assert "cannot connect to the SMTP relay 127.0.0.1:" in result.stderr
    assert "NEWSLETTER_SMTP_HOST" in result.stderr
    no_traceback(result)


def test_smtp_refuses_the_default_secret_outside_demo_mode(run: Callable[..., Result]) -> None:
    env = {"NEWSLETTER_TRANSPORT": "smtp", "NEWSLETTER_DEMO": "false"}
    result = run("send", "--date", EDITION, env=env)
    assert result.exit_code == 2
    assert "NEWSLETTER_SECRET_KEY is the default" in result.stderr


def test_config_masks_secrets(run: Callable[..., Result]) -> None:
    output = ok(run("config", env={"NEWSLETTER_SMTP_PASSWORD": "hunter2"})).stdout
    assert "hunter2" not in output
    assert '"transport": "folder"' in output


@pytest.mark.browser
def test_preview_png_writes_desktop_and_phone_screenshots(
    run: Callable[..., Result], tmp_path: Path, chromium: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(screenshot, "CHROMIUM", chromium)
    ok(run("fetch"))
    ok(run("issue", "build", "--date", EDITION))
    target = tmp_path / "preview.html"
    printed = ok(
        run("issue", "preview", "--date", EDITION, "-o", str(target), "--png")
    ).stdout.split()
    assert printed == [
        str(target),
        str(tmp_path / "preview-600.png"),
        str(tmp_path / "preview-375.png"),
    ]
    for png in printed[1:]:
        assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
