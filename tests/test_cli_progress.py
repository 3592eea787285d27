"""Progress off a terminal (logs, CI, a pipe): plain lines every few seconds, never a cut-off bar."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from rich.console import Console

from newsletter.cli import cli, progress

EDITION = "2026-11-24"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def plain_console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=False, highlight=False, soft_wrap=True), out


@pytest.fixture
def run(sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    monkeypatch.setenv("NEWSLETTER_CONFIG", "examples/demo.toml")
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("NEWSLETTER_OUTBOX_DIR", str(tmp_path / "outbox"))

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(cli, list(args), catch_exceptions=False)

    return invoke


def test_send_off_a_terminal_prints_plain_progress_lines_not_a_cut_bar(
    run: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(progress, "PLAIN_EVERY_SECONDS", 0.0)  # a line at every step
    imported = run("subscribers", "import", "examples/subscribers.csv", "--confirmed")
    assert imported.exit_code == 0, imported.output
    assert "Importing: 24/24 (100%)" in imported.stderr
    assert run("fetch").exit_code == 0
    sent = run("send", "--date", EDITION)
    assert sent.exit_code == 0, sent.output
    lines = sent.stderr.splitlines()
    assert "Sending: 1/24 (4%) sent 1 · failed 0 · retry 0" in lines[0]
    assert any(
        line.startswith("Sending: 24/24 (100%) sent 24 · failed 0 · retry 0") for line in lines
    )
    for output in (imported.stderr, sent.stderr):
        assert "…" not in output and "━" not in output and "0:00" not in output


def test_plain_progress_prints_a_line_every_interval_and_a_last_one() -> None:
    console, out = plain_console()
    clock = FakeClock()
    with progress.Bars(console, every=5.0, clock=clock) as bars:
        count = bars.counter("Importing", 100)
        for _ in range(12):  # one row a second
            clock.now += 1.0
            count(1)
    assert out.getvalue().splitlines() == [
        "Importing: 5/100 (5%)",
        "Importing: 10/100 (10%)",
        "Importing: 12/100 (12%)",
    ]


def test_plain_progress_without_a_total_counts() -> None:
    console, out = plain_console()
    clock = FakeClock()
    with progress.Bars(console, every=5.0, clock=clock) as bars:
        count = bars.counter("Delivered", None)
        clock.now += 6.0
        count(3)
    assert out.getvalue().splitlines() == ["Delivered: 3"]  # nothing new to say at the end


def test_plain_progress_of_nothing_prints_nothing() -> None:
    console, out = plain_console()
    with progress.Bars(console, every=5.0, clock=FakeClock()) as bars:
        bars.counter("Delivered", None)
    assert out.getvalue() == ""


def test_a_terminal_still_gets_the_rich_bar() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    with progress.Bars(console, every=5.0, clock=FakeClock()) as bars:
        bars.counter("Importing", 2)(2)
    assert "Importing" in out.getvalue() and "2/2" in out.getvalue()
    assert "Importing: 2/2" not in out.getvalue()
