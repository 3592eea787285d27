"""``newsletter demo`` end to end, as a new user runs it, in a fresh directory."""

from __future__ import annotations

import email
import email.policy
import os
import shutil
from collections import Counter
from email.message import EmailMessage
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from tests.conftest import EXAMPLES

pytestmark = pytest.mark.slow


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("NEWSLETTER_") and name != "NEWSLETTER_TEST_POSTGRES_URL":
            monkeypatch.delenv(name)
    return tmp_path


def messages(outbox: Path) -> list[EmailMessage]:
    parsed = []
    for path in sorted((outbox / "new").iterdir()):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        parsed.append(message)
    return parsed


def test_demo_delivers_one_well_formed_digest_to_every_subscriber(workdir: Path) -> None:
    result = CliRunner().invoke(cli, ["demo"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert (workdir / "var" / "newsletter.db").is_file()
    preview = workdir / "var" / "preview"
    assert "Preview HTML: var/preview/" in result.stdout
    assert len(list(preview.glob("*.html"))) == 1
    assert "Subscribers: 24 confirmed" in result.stdout
    assert "Messages are in: var/outbox/new" in result.stdout

    received = messages(workdir / "var" / "outbox")
    expected = {
        line.split(",")[0]
        for line in (EXAMPLES / "subscribers.csv").read_text(encoding="utf-8").splitlines()[1:]
    }
    per_recipient = Counter(message["To"].addresses[0].addr_spec for message in received)
    assert set(per_recipient) == expected
    assert set(per_recipient.values()) == {1}
    for message in received:
        assert message.get_content_type() == "multipart/alternative"
        assert not message.defects
        html_part = message.get_body(("html",))
        text_part = message.get_body(("plain",))
        assert html_part is not None and text_part is not None
        html = html_part.get_content()
        text = text_part.get_content()
        assert 'style="' in html
        assert "<script" not in html.lower()
        assert "__NL_" not in html and "__NL_" not in text
        recipient = message["To"].addresses[0].addr_spec
        assert recipient in text
        for header in ("From", "Subject", "Date", "Message-ID", "List-Id", "List-Unsubscribe"):
            assert message[header], f"missing {header}"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        # The recorded prices are from 24 Nov 2026: never stated as today's.
        assert "$" not in str(message["Subject"])
        assert "$63,957.00" in html and "$63,957.00" in text
        lead = text.replace("\r\n", "\n").split("\n\n", 2)[1]
        assert lead.startswith("Latest prices available, from 24 Nov 2026")


def test_demo_twice_sends_nothing_new(workdir: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["demo"], catch_exceptions=False).exit_code == 0
    before = sorted((workdir / "var" / "outbox" / "new").iterdir())
    second = runner.invoke(cli, ["demo"], catch_exceptions=False)
    assert second.exit_code == 0, second.output
    assert "was already sent" in second.stdout
    assert "nothing new was sent" in second.stdout
    assert sorted((workdir / "var" / "outbox" / "new").iterdir()) == before
