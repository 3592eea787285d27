"""Retention of the ledger: ``newsletter deliveries prune --older-than DAYS`` removes the rows of
old editions that are over, keeps everything else, and keeps the delivery counts equal to the
ledger, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, update

from newsletter.bootstrap import App
from newsletter.cli import cli
from newsletter.delivery import ledger
from newsletter.errors import IssueStateError, UsageError
from newsletter.models import (
    Bounce,
    BounceKind,
    Delivery,
    DeliveryCount,
    DeliveryStatus,
    Issue,
    IssueStatus,
)
from subscribers.service import add_subscriber
from tests.conftest import FIXED_NOW

TODAY = FIXED_NOW.date()
READERS = 5


def edition(app: App, day: date, status: IssueStatus, *, sent: int, failed: int = 0) -> int:
    """An edition of ``day`` queued to every reader, ``sent`` + ``failed`` of them done."""
    moment = datetime.combine(day, FIXED_NOW.timetz())
    with app.database.transaction() as session:
        issue = Issue(edition_date=day, subject=f"Edition {day}", created_at=moment)
        session.add(issue)
        session.flush()
        ledger.enqueue_issue(session, issue.id, now=moment, not_before=moment)
        ids = session.scalars(
            select(Delivery.id).where(Delivery.issue_id == issue.id).order_by(Delivery.id)
        ).all()
        session.execute(
            update(Delivery)
            .where(Delivery.id.in_(ids[:sent]))
            .values(status=DeliveryStatus.SENT, sent_at=moment)
        )
        session.execute(
            update(Delivery)
            .where(Delivery.id.in_(ids[sent : sent + failed]))
            .values(status=DeliveryStatus.FAILED, last_error="550 no such user")
        )
        session.execute(update(Issue).where(Issue.id == issue.id).values(status=status))
        return issue.id


def ledger_rows(app: App) -> dict[int, int]:
    with app.database.transaction(readonly=True) as session:
        rows = session.execute(
            select(Delivery.issue_id, func.count()).group_by(Delivery.issue_id)
        ).all()
    return {int(issue_id): int(count) for issue_id, count in rows}


def kept_counts(app: App) -> dict[int, int]:
    with app.database.transaction(readonly=True) as session:
        rows = session.execute(
            select(DeliveryCount.issue_id, func.sum(DeliveryCount.count)).group_by(
                DeliveryCount.issue_id
            )
        ).all()
    return {issue_id: int(count) for issue_id, count in rows if count}


def test_prune_keeps_recent_and_unfinished_editions_and_the_counts(
    app_factory: Callable[..., App], database_url: str
) -> None:
    app = app_factory(database_url=database_url)
    with app.database.transaction() as session:
        for n in range(READERS):
            add_subscriber(session, f"reader{n}@example.com", confirmed=True, now=FIXED_NOW)
    old = edition(app, TODAY - timedelta(days=40), IssueStatus.SENT, sent=4, failed=1)
    cancelled = edition(app, TODAY - timedelta(days=35), IssueStatus.CANCELLED, sent=2)
    stuck = edition(app, TODAY - timedelta(days=50), IssueStatus.SENDING, sent=3)
    recent = edition(app, TODAY - timedelta(days=10), IssueStatus.SENT, sent=READERS)
    with app.database.transaction() as session:
        bounced = session.scalars(
            select(Delivery.id).where(
                Delivery.issue_id == old, Delivery.status == DeliveryStatus.FAILED
            )
        ).one()
        session.add(
            Bounce(
                report_id="<report-1@example.net>",
                recipient="reader4@example.com",
                kind=BounceKind.HARD,
                delivery_id=bounced,
                source="test",
                received_at=FIXED_NOW,
            )
        )

    dry = app.editions.prune_deliveries(older_than_days=30, now=FIXED_NOW, dry_run=True)
    # the cancelled edition keeps its 3 queued rows; only its 2 sent ones go
    assert (dry.editions, dry.deliveries) == (2, READERS + 2)
    assert ledger_rows(app) == dict.fromkeys((old, cancelled, stuck, recent), READERS)

    pruned = app.editions.prune_deliveries(older_than_days=30, now=FIXED_NOW)
    assert (pruned.editions, pruned.deliveries) == (2, READERS + 2)
    assert pruned.before == TODAY - timedelta(days=30)
    assert ledger_rows(app) == {cancelled: 3, stuck: READERS, recent: READERS}
    assert kept_counts(app) == ledger_rows(app)
    with app.database.transaction(readonly=True) as session:
        report = session.scalars(select(Bounce)).one()
        assert report.delivery_id is None and report.recipient == "reader4@example.com"
        assert session.scalar(select(func.count()).select_from(Issue)) == 4
    # twice changes nothing
    again = app.editions.prune_deliveries(older_than_days=30, now=FIXED_NOW)
    assert (again.editions, again.deliveries) == (0, 0)
    assert kept_counts(app) == ledger_rows(app)


def test_prune_refuses_less_than_a_day(app_factory: Callable[..., App], sqlite_url: str) -> None:
    app = app_factory(database_url=sqlite_url)
    with pytest.raises(UsageError, match="at least 1 day"):
        app.editions.prune_deliveries(older_than_days=0, now=FIXED_NOW)


def test_the_command(sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_CONFIG", "examples/demo.toml")
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("NEWSLETTER_OUTBOX_DIR", str(tmp_path / "outbox"))
    runner = CliRunner()
    result = runner.invoke(cli, ["deliveries", "prune", "--older-than", "90", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "0 deliveries of 0 editions dated before" in result.stdout
    assert "would be pruned" in result.stdout
    result = runner.invoke(cli, ["deliveries", "prune", "--older-than", "90"])
    assert result.exit_code == 0 and "Pruned 0 deliveries of 0 editions" in result.stdout
    refused = runner.invoke(cli, ["deliveries", "prune", "--older-than", "0"])
    assert refused.exit_code == 2 and "at least 1 day" in refused.stderr


def test_a_pruned_edition_is_never_sent_again_as_a_follow_up(
    app_factory: Callable[..., App], database_url: str
) -> None:
    """Its ledger gone, a follow-up would take every reader for a newcomer: it is refused."""
    app = app_factory(database_url=database_url)
    with app.database.transaction() as session:
        for n in range(READERS):
            add_subscriber(session, f"reader{n}@example.com", confirmed=True, now=FIXED_NOW)
    day = TODAY - timedelta(days=40)
    old = edition(app, day, IssueStatus.SENT, sent=READERS)
    recent = edition(app, TODAY - timedelta(days=10), IssueStatus.SENT, sent=READERS - 1)
    app.editions.prune_deliveries(older_than_days=30, now=FIXED_NOW)
    with app.database.transaction(readonly=True) as session:
        assert session.get(Issue, old).ledger_pruned_at is not None  # type: ignore[union-attr]
        assert session.get(Issue, recent).ledger_pruned_at is None  # type: ignore[union-attr]

    with pytest.raises(IssueStateError, match=r"pruned on .*no longer known"):
        app.sending.send(edition_date=day, now=FIXED_NOW, follow_up=True)
    assert ledger_rows(app).get(old) is None  # nothing queued
    with app.database.transaction(readonly=True) as session:
        assert session.get(Issue, old).status is IssueStatus.SENT  # type: ignore[union-attr]
