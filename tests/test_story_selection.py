"""Sharper news: per-feed include / exclude rules and priority, repeats across days, and why each
candidate story was taken or left; feeds served by a real local HTTP server, on both databases."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import pytest
from click.testing import CliRunner
from pytest_httpserver import HTTPServer
from sqlalchemy import update
from werkzeug import Request, Response

from newsletter.bootstrap import App
from newsletter.cli import cli
from newsletter.config import Settings, load_settings
from newsletter.errors import ConfigError
from newsletter.models import Issue, IssueStatus
from newsletter.stories import Verdict, similarity

NOW = datetime(2026, 11, 24, 6, 30, tzinfo=UTC)
ETF = "Bitcoin ETFs log record inflows"


def rss(name: str, items: Sequence[tuple[str, datetime]], *, summary: str = "") -> bytes:
    """An RSS 2.0 feed file of ``items`` (title, published)."""
    entries = "".join(
        f"<item><title>{escape(title)}</title>"
        f"<link>https://{name.lower()}.example.com/{number}-{abs(hash(title)) % 10**8}</link>"
        f"<guid isPermaLink='false'>{name}-{abs(hash(title)) % 10**8}</guid>"
        f"<pubDate>{format_datetime(published)}</pubDate>"
        f"<description>{escape(summary or title + ': the details.')}</description></item>"
        for number, (title, published) in enumerate(items)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
        f"<title>{name}</title><link>https://{name.lower()}.example.com/</link>"
        f"<description>{name}</description>{entries}</channel></rss>"
    ).encode()


class FeedFiles:
    """Feed files on disk, served over HTTP by a local server; rewrite one to change the feed."""

    def __init__(self, server: HTTPServer, directory: Path) -> None:
        self.server = server
        self.directory = directory
        server.expect_request(re.compile(r"/feeds/.+"), method="GET").respond_with_handler(
            self._serve
        )

    def _serve(self, request: Request) -> Response:
        path = self.directory / request.path.rsplit("/", 1)[-1]
        if not path.is_file():
            return Response("no such feed", status=404)
        return Response(path.read_bytes(), content_type="application/rss+xml")

    def write(self, name: str, content: bytes) -> str:
        (self.directory / f"{name}.xml").write_bytes(content)
        return self.server.url_for(f"/feeds/{name}.xml")


@pytest.fixture
def feeds(httpserver: HTTPServer, tmp_path: Path) -> FeedFiles:
    directory = tmp_path / "feeds"
    directory.mkdir()
    return FeedFiles(httpserver, directory)


@pytest.fixture
def app_on(app_factory: Callable[..., App], database_url: str) -> Callable[..., App]:
    def make(**overrides: Any) -> App:
        overrides.setdefault("max_article_age_hours", 0)
        return app_factory(database_url=database_url, **overrides)

    return make


def verdicts_by_title(verdicts: Sequence[Verdict]) -> dict[str, Verdict]:
    return {verdict.title: verdict for verdict in verdicts}


def test_rules_priority_and_duplicates_explained(
    feeds: FeedFiles, app_on: Callable[..., App]
) -> None:
    wire = feeds.write(
        "wire",
        rss(
            "Wire",
            [
                ("Stablecoin supply hits a new high", NOW - timedelta(minutes=10)),
                (ETF, NOW - timedelta(hours=1)),
                ("Free airdrop for early users", NOW - timedelta(hours=2)),
                ("Dogecoin price prediction for 2027", NOW - timedelta(hours=3)),
                ("Miners sell the most coins in a year", NOW - timedelta(days=5)),
            ],
        ),
    )
    desk = feeds.write(
        "desk",
        rss(
            "Desk",
            [
                ("Bitcoin ETFs Log Record Inflows!", NOW - timedelta(minutes=30)),
                ("Solana validators vote on a fee change", NOW - timedelta(minutes=90)),
                ("Ethereum developers set the upgrade date", NOW - timedelta(hours=4)),
            ],
        ),
    )
    app = app_on(
        article_count=1,
        max_article_age_hours=48,
        feeds=[
            {"name": "Wire", "url": wire, "exclude": ["airdrop", r"/\bprice\s+prediction/"]},
            {"name": "Desk", "url": desk, "priority": 5, "include": ["ethereum", "/ETFs?/"]},
        ],
    )
    app.sources.fetch(now=NOW)
    result = app.editions.build(edition_date=NOW.date(), now=NOW, explain=True)
    assert result.stories == 1
    seen = verdicts_by_title(result.verdicts)
    # Desk (priority 5) goes first in the round, although Wire's story is newer.
    assert seen["Bitcoin ETFs Log Record Inflows!"].taken
    assert seen["Bitcoin ETFs Log Record Inflows!"].reason == "taken as story 1 (feed priority 5)"
    assert seen["Stablecoin supply hits a new high"].reason == (
        "below the cut: the edition holds 1 stories"
    )
    assert seen["Ethereum developers set the upgrade date"].reason == (
        "below the cut: the edition holds 1 stories (feed priority 5)"
    )
    assert seen[ETF].reason == (
        "duplicate within the day of 'Bitcoin ETFs Log Record Inflows!' from Desk"
    )
    assert seen["Free airdrop for early users"].reason == "excluded by rule 'airdrop' of Wire"
    assert seen["Dogecoin price prediction for 2027"].reason == (
        "excluded by rule '/\\\\bprice\\\\s+prediction/' of Wire"
    )
    assert seen["Solana validators vote on a fee change"].reason == (
        "matches no include rule of Desk ('ethereum', '/ETFs?/')"
    )
    old = seen["Miners sell the most coins in a year"]
    assert not old.taken and old.reason.startswith("too old: published before the window")
    assert sum(verdict.taken for verdict in result.verdicts) == 1


def test_a_story_republished_with_a_changed_title_is_a_repeat(
    feeds: FeedFiles, app_on: Callable[..., App]
) -> None:
    monday = NOW - timedelta(days=1)
    url = feeds.write("wire", rss("Wire", [(ETF, monday - timedelta(hours=1))]))
    app = app_on(feeds=[{"name": "Wire", "url": url}])
    app.sources.fetch(now=monday)
    assert app.editions.build(edition_date=monday.date(), now=monday).stories == 1
    with app.database.transaction() as session:  # Monday's edition went out
        session.execute(
            update(Issue)
            .where(Issue.edition_date == monday.date())
            .values(status=IssueStatus.SENT, sent_at=monday)
        )
    again = [
        "Bitcoin ETFs Log Record Inflows!",
        "Bitcoin ETFs log record inflows, analysts say",
        "BITCOIN ETFS LOG RECORD INFLOWS",
    ]
    feeds.write(
        "wire",
        rss(
            "Wire",
            [(title, NOW - timedelta(hours=1 + n)) for n, title in enumerate(again)]
            + [("Solana validators vote on a fee change", NOW - timedelta(hours=5))],
        ),
    )
    app.sources.fetch(now=NOW)
    result = app.editions.build(edition_date=NOW.date(), now=NOW, explain=True)
    seen = verdicts_by_title(result.verdicts)
    assert result.stories == 1 and seen["Solana validators vote on a fee change"].taken
    for title in again:
        assert seen[title].reason == f"repeat of {ETF!r} from {monday.date()} (score 100)", title
    # Past the window of days (7 by default) the old story no longer counts.
    later = NOW + timedelta(days=7)
    result = app.editions.build(edition_date=later.date(), now=later, explain=True)
    seen = verdicts_by_title(result.verdicts)
    assert result.stories == 1 and seen[again[0]].taken
    assert seen[again[1]].reason == (
        f"duplicate within the day of {again[0]!r} from Wire (score 100)"
    )
    assert seen[again[2]].reason == f"duplicate within the day of {again[0]!r} from Wire"


def test_the_repeat_threshold_is_a_setting(feeds: FeedFiles, app_on: Callable[..., App]) -> None:
    monday = NOW - timedelta(days=1)
    url = feeds.write("wire", rss("Wire", [(ETF, monday - timedelta(hours=1))]))
    strict = app_on(feeds=[{"name": "Wire", "url": url}], story_repeat_threshold=100)
    strict.sources.fetch(now=monday)
    strict.editions.build(edition_date=monday.date(), now=monday)
    with strict.database.transaction() as session:
        session.execute(update(Issue).values(status=IssueStatus.SENT, sent_at=monday))
    # "outflows" is another story: below the default threshold of 95 as well
    feeds.write(
        "wire",
        rss(
            "Wire",
            [
                ("Bitcoin ETF logs record inflows", NOW - timedelta(hours=1)),
                ("Bitcoin ETFs log record outflows", NOW - timedelta(hours=2)),
            ],
        ),
    )
    strict.sources.fetch(now=NOW)
    assert strict.editions.build(edition_date=NOW.date(), now=NOW).stories == 2
    assert similarity("bitcoin etfs log record inflows", "bitcoin etfs log record outflows") < 95


def test_a_bad_regular_expression_names_the_feed(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(
        '[[feeds]]\nname = "Chainwire"\nurl = "https://news.example.com/feed"\n'
        "exclude = ['/(unclosed/']\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as raised:
        load_settings(config)
    message = str(raised.value)
    assert "feed 'Chainwire'" in message and "'/(unclosed/'" in message
    assert "not a valid regular expression" in message and "between slashes" in message


def test_an_empty_rule_is_refused(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(
        ConfigError, match="feed 'Desk': include rule '  ': a rule may not be empty"
    ):
        make_settings(feeds=[{"name": "Desk", "url": "x.xml", "include": ["  "]}])


def test_issue_build_explain_on_the_command_line(
    feeds: FeedFiles,
    sqlite_url: str,
    make_settings: Callable[..., Settings],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    published = datetime.now(UTC) - timedelta(hours=1)
    url = feeds.write(
        "wire",
        rss("Wire", [("Ethereum developers set the upgrade date", published), (ETF, published)]),
    )
    config = tmp_path / "news.toml"
    demo = Path("examples/demo.toml").read_text(encoding="utf-8")
    head = demo.split("[[feeds]]", 1)[0]
    config.write_text(
        head + f'[[feeds]]\nname = "Wire"\nurl = "{url}"\nexclude = ["/^ethereum/"]\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("NEWSLETTER_OUTBOX_DIR", str(tmp_path / "outbox"))
    runner = CliRunner()
    assert runner.invoke(cli, ["--config", str(config), "fetch"]).exit_code == 0
    result = runner.invoke(
        cli, ["--config", str(config), "issue", "build", "--explain"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert "2 candidate stories:" in result.stdout
    assert f"taken {published:%Y-%m-%d %H:%M} Wire: {ETF}" in result.stdout
    assert "taken as story 1" in result.stdout
    assert "left  " in result.stdout and "excluded by rule '/^ethereum/' of Wire" in result.stdout


def test_rules_match_words_not_parts_of_words() -> None:
    from newsletter.config import rule_pattern

    assert rule_pattern("ETF").search("Spot etf approved")
    assert not rule_pattern("ETF").search("ETFs approved")
    assert rule_pattern("price  prediction").search("Price\nprediction for 2027")
    assert rule_pattern("/ETFs?/").search("ETFs approved")
    assert not rule_pattern("/^bitcoin/").search("Why bitcoin")
