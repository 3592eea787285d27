"""The admin API's build (with the reasons of ``issue build --explain``) and its per-relay counts
(those of ``issue status``): feeds from a real local HTTP server, real SMTP relays on loopback, both
databases."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from newsletter.cli import cli
from newsletter.models import Issue, IssueStatus
from tests.test_relays import (
    EDITION,
    READERS,
    RunningRelay,
    counts,
    relay_table,
    send_edition,
    start_relay,
)
from tests.test_story_selection import ETF, NOW, FeedFiles, feeds, rss
from tests.web_fixtures import Web, web_factory

__all__ = ["feeds", "start_relay", "web_factory"]


BUILD = f"/api/editions/{NOW.date()}/build"


@pytest.fixture
def web_news(
    feeds: FeedFiles, web_factory: Callable[..., Web], database_url: str
) -> Callable[..., Web]:
    """The web app with two feeds served over HTTP: an excluding rule on one, a priority on the
    other."""

    def make(**overrides: Any) -> Web:
        wire = feeds.write(
            "wire",
            rss(
                "Wire",
                [
                    ("Stablecoin supply hits a new high", NOW - timedelta(minutes=10)),
                    ("Free airdrop for early users", NOW - timedelta(hours=2)),
                ],
            ),
        )
        desk = feeds.write("desk", rss("Desk", [(ETF, NOW - timedelta(minutes=30))]))
        web = web_factory(
            database_url,
            article_count=1,
            max_article_age_hours=48,
            feeds=[
                {"name": "Wire", "url": wire, "exclude": ["airdrop"]},
                {"name": "Desk", "url": desk, "priority": 5},
            ],
            **overrides,
        )
        web.app.sources.fetch(now=NOW)
        return web

    return make


def test_build_then_rebuild_with_the_reasons_of_the_command_line(
    web_news: Callable[..., Web],
) -> None:
    web = web_news()
    first = web.client.post(BUILD, headers=web.admin())
    assert first.status_code == 200, first.text
    built = first.json()
    assert built["edition_date"] == NOW.date().isoformat()
    assert built["stories"] == 1 and built["stories_dropped"] == 0
    assert built["rebuilt"] is False and built["verdicts"] is None
    assert built["subject"] and isinstance(built["issue_id"], int)
    assert {"coins", "market_stale"} <= built.keys()

    second = web.client.post(BUILD, params={"explain": "true"}, headers=web.admin())
    assert second.status_code == 200, second.text
    rebuilt = second.json()
    assert rebuilt["rebuilt"] is True and rebuilt["issue_id"] == built["issue_id"]
    seen = {verdict["title"]: verdict for verdict in rebuilt["verdicts"]}
    assert seen[ETF]["taken"] is True and seen[ETF]["feed"] == "Desk"
    assert seen[ETF]["reason"] == "taken as story 1 (feed priority 5)"
    airdrop = seen["Free airdrop for early users"]
    assert airdrop["taken"] is False and airdrop["feed"] == "Wire"
    assert airdrop["reason"] == "excluded by rule 'airdrop' of Wire"
    assert seen["Stablecoin supply hits a new high"]["reason"] == (
        "below the cut: the edition holds 1 stories"
    )

    # the very words the command line prints: the same service call
    result = web.app.editions.build(edition_date=NOW.date(), now=NOW, explain=True)
    assert [
        (verdict.source, verdict.title, verdict.taken, verdict.reason)
        for verdict in result.verdicts
    ] == [
        (verdict["feed"], verdict["title"], verdict["taken"], verdict["reason"])
        for verdict in rebuilt["verdicts"]
    ]


def test_an_edition_subscribers_received_is_not_rebuilt(web_news: Callable[..., Web]) -> None:
    web = web_news()
    assert web.client.post(BUILD, headers=web.admin()).status_code == 200
    with web.app.database.transaction() as session:
        session.execute(
            update(Issue)
            .where(Issue.edition_date == NOW.date())
            .values(status=IssueStatus.SENT, sent_at=NOW)
        )
        before = session.scalars(select(Issue)).one()
        kept = (before.subject, before.built_at)

    refused = web.client.post(BUILD, params={"explain": "true"}, headers=web.admin())
    assert refused.status_code == 409, refused.text
    problem = refused.json()
    assert "cannot be rebuilt" in problem["error"] and problem["hint"]
    with web.app.database.transaction(readonly=True) as session:
        after = session.scalars(select(Issue)).one()
        assert (after.subject, after.built_at) == kept
        assert after.status is IssueStatus.SENT


def test_a_bad_date_is_a_422(web_news: Callable[..., Web]) -> None:
    web = web_news()
    answer = web.client.post("/api/editions/2026-13-40/build", headers=web.admin())
    assert answer.status_code == 422


def test_relay_counts_match_issue_status(
    web_factory: Callable[..., Web],
    database_url: str,
    start_relay: Callable[..., RunningRelay],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    web = web_factory(database_url)
    assert web.client.get("/api/relays", headers=web.admin()).json() == []

    busy = start_relay(refuse="421 4.7.0 Too many connections, closing")
    backup = start_relay()
    web = web_factory(
        database_url,
        transport="smtp",
        relays=[relay_table(busy.port, 0), relay_table(backup.port, 5)],
    )
    send_edition(web.app)
    assert len(backup.handler.received) == READERS and busy.handler.received == []

    answer = web.client.get("/api/relays", headers=web.admin())
    assert answer.status_code == 200, answer.text
    relays = answer.json()
    assert relays == sorted(
        [
            {"relay": busy.name, "sent": 0, "deferred": 0, "failed": 0, "skipped": READERS},
            {"relay": backup.name, "sent": READERS, "deferred": 0, "failed": 0, "skipped": 0},
        ],
        key=lambda row: row["relay"],
    )
    assert {
        row["relay"]: {kind: count for kind, count in row.items() if kind != "relay"}
        for row in relays
    } == counts(web.app)

    monkeypatch.setenv("NEWSLETTER_CONFIG", "examples/demo.toml")
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", database_url)
    status = CliRunner().invoke(
        cli, ["issue", "status", "--date", EDITION.isoformat()], catch_exceptions=False
    )
    assert status.exit_code == 0, status.output
    for row in relays:
        line = ", ".join(
            f"{row[kind]} {kind}" for kind in ("sent", "deferred", "failed", "skipped")
        )
        assert f"  {row['relay']}: {line}" in status.output
