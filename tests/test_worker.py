"""Workers, enqueueing at local send times, pausing, cancelling, resuming, and pacing."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from newsletter.bootstrap import App
from newsletter.cli import cli
from newsletter.delivery.pacing import Pacer
from newsletter.models import Delivery, DeliveryStatus, Issue, IssueStatus
from newsletter.services.editions import Editions
from subscribers.service import add_subscriber
from tests.conftest import FIXED_NOW

EDITION = date(2026, 11, 24)


def edition(
    app_factory: Callable[..., App], database_url: str, readers: int = 5, **overrides: object
) -> App:
    app = app_factory(database_url=database_url, **overrides)
    app.sources.fetch(now=FIXED_NOW)
    app.editions.build(edition_date=EDITION, now=FIXED_NOW)
    with app.database.transaction() as session:
        for number in range(readers):
            add_subscriber(session, f"reader{number}@example.com", confirmed=True, timezone="UTC")
    return app


def outbox(tmp_path: Path) -> list[Path]:
    box = tmp_path / "outbox" / "new"
    return sorted(box.iterdir()) if box.exists() else []


def statuses(app: App) -> dict[DeliveryStatus, int]:
    with app.database.transaction(readonly=True) as session:
        rows = session.scalars(select(Delivery.status)).all()
    return {status: rows.count(status) for status in DeliveryStatus if rows.count(status)}


def test_enqueue_then_a_worker_delivers_and_exits_when_idle(
    app_factory: Callable[..., App], database_url: str, tmp_path: Path
) -> None:
    app = edition(app_factory, database_url, send_time="06:00")
    queued = app.sending.enqueue(edition_date=EDITION, now=FIXED_NOW)
    assert queued.enqueued == 5
    assert queued.first_due == datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
    assert outbox(tmp_path) == []  # enqueue sends nothing
    report = app.worker.run(stop=threading.Event(), exit_when_idle=True, clock=lambda: FIXED_NOW)
    assert report.sent == 5
    assert report.editions == {EDITION}
    assert len(outbox(tmp_path)) == 5
    with app.database.transaction(readonly=True) as session:
        assert session.scalars(select(Issue.status)).one() is IssueStatus.SENT


def test_a_worker_waits_for_rows_that_are_not_due(
    app_factory: Callable[..., App], database_url: str, tmp_path: Path
) -> None:
    app = edition(
        app_factory, database_url, send_time="09:00"
    )  # due at 09:00 UTC, 2.5 h after FIXED_NOW
    app.sending.enqueue(edition_date=EDITION, now=FIXED_NOW)
    stop = threading.Event()
    timer = threading.Timer(1.0, stop.set)
    timer.start()
    report = app.worker.run(
        stop=stop, exit_when_idle=True, poll_seconds=0.1, clock=lambda: FIXED_NOW
    )
    timer.cancel()
    assert report.sent == 0
    assert outbox(tmp_path) == []
    later = FIXED_NOW + timedelta(hours=3)
    assert (
        app.worker.run(stop=threading.Event(), exit_when_idle=True, clock=lambda: later).sent == 5
    )


def test_a_paused_edition_is_held_and_a_cancelled_one_stops(
    app_factory: Callable[..., App], database_url: str, tmp_path: Path
) -> None:
    app = edition(app_factory, database_url, send_time="06:00")
    app.sending.enqueue(edition_date=EDITION, now=FIXED_NOW)
    assert app.editions.set_paused(edition_date=EDITION, paused=True, now=FIXED_NOW)
    assert not app.editions.set_paused(edition_date=EDITION, paused=True, now=FIXED_NOW)
    report = app.worker.run(stop=threading.Event(), exit_when_idle=True, clock=lambda: FIXED_NOW)
    assert report.sent == 0
    assert statuses(app) == {DeliveryStatus.QUEUED: 5}
    assert app.editions.cancel_edition(edition_date=EDITION, now=FIXED_NOW) == 5
    assert statuses(app) == {DeliveryStatus.FAILED: 5}
    with app.database.transaction(readonly=True) as session:
        issue = session.scalars(select(Issue)).one()
        assert issue.status is IssueStatus.CANCELLED
        failed = session.scalars(select(Delivery)).first()
        assert failed is not None and failed.last_error == "edition cancelled by an operator"
    assert outbox(tmp_path) == []


def test_send_resume_finishes_an_interrupted_send(
    app_factory: Callable[..., App], database_url: str, tmp_path: Path
) -> None:
    app = edition(app_factory, database_url, send_time="09:00")
    app.sending.enqueue(edition_date=EDITION, now=FIXED_NOW)
    app.editions.set_paused(edition_date=EDITION, paused=True, now=FIXED_NOW)
    outcome = app.sending.send(
        edition_date=EDITION, now=FIXED_NOW, clock=lambda: FIXED_NOW, resume_only=True
    )
    assert outcome.enqueued == 0
    assert outcome.report is not None and outcome.report.sent == 5 and outcome.report.finished
    assert len(outbox(tmp_path)) == 5


def test_resume_without_a_send_in_progress_is_refused(
    app_factory: Callable[..., App], database_url: str
) -> None:
    app = edition(app_factory, database_url)
    with pytest.raises(Exception, match="no interrupted send to resume"):
        app.sending.send(edition_date=EDITION, now=FIXED_NOW, resume_only=True)


def test_the_relay_rate_is_shared_by_every_worker(
    app_factory: Callable[..., App], database_url: str
) -> None:
    app = edition(app_factory, database_url, readers=0)
    now = FIXED_NOW
    # Two workers, one bucket of 120 messages a minute: together they never exceed it.
    first = Pacer(
        app.database,
        relay="relay:smtp.example.com",
        relay_per_minute=120,
        chunk=5,
        clock=lambda: now,
    )
    second = Pacer(
        app.database,
        relay="relay:smtp.example.com",
        relay_per_minute=120,
        chunk=5,
        clock=lambda: now,
    )
    allowed = sum(
        1
        for number in range(100)
        if (first if number % 2 else second).delay(f"r{number}@example.com") == 0
    )
    assert allowed == 10  # the burst: five seconds' worth of 120 a minute
    waits = [first.delay("late@example.com"), second.delay("late@example.com")]
    assert all(0 < wait <= 1.0 for wait in waits)
    later = now + timedelta(seconds=30)
    third = Pacer(
        app.database,
        relay="relay:smtp.example.com",
        relay_per_minute=120,
        chunk=5,
        clock=lambda: later,
    )
    assert (
        third.delay("after@example.com") == 0
    )  # refilled meanwhile, and remembered across restarts


def test_paced_messages_go_back_to_the_queue_without_an_attempt(
    app_factory: Callable[..., App], database_url: str, tmp_path: Path
) -> None:
    app = edition(app_factory, database_url, readers=30, rate_limits={"example.com": 12})
    outcome = app.sending.send(edition_date=EDITION, now=FIXED_NOW, clock=lambda: FIXED_NOW)
    assert outcome.report is not None
    assert outcome.report.sent == 1  # 12 a minute: a burst of one, the rest wait their turn
    assert outcome.report.deferred == 29
    with app.database.transaction(readonly=True) as session:
        waiting = session.scalars(
            select(Delivery).where(Delivery.status == DeliveryStatus.QUEUED)
        ).all()
    assert len(waiting) == 29
    assert {row.attempts for row in waiting} == {0}
    assert all(row.not_before > FIXED_NOW for row in waiting)
    assert len(outbox(tmp_path)) == 1


def run(*args: str, env: dict[str, str]) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def test_operator_commands(
    make_settings: Callable[..., object], sqlite_url: str, tmp_path: Path
) -> None:
    env = {
        "NEWSLETTER_CONFIG": "examples/demo.toml",
        "NEWSLETTER_DATABASE_URL": sqlite_url,
        "NEWSLETTER_OUTBOX_DIR": str(tmp_path / "outbox"),
        "NEWSLETTER_SEND_TIME": "00:00",
    }
    assert (
        run("subscribers", "import", "examples/subscribers.csv", "--confirmed", env=env).exit_code
        == 0
    )
    assert run("fetch", env=env).exit_code == 0
    queued = run("issue", "enqueue", "--date", "2026-11-24", env=env)
    assert queued.exit_code == 0, queued.output
    assert "Queued 24 deliveries of 2026-11-24" in queued.stdout
    assert "Paused" in run("issue", "pause", "--date", "2026-11-24", env=env).stdout
    assert "Resumed" in run("issue", "resume", "--date", "2026-11-24", env=env).stdout
    worked = run("worker", "--exit-when-idle", "--date", "2026-11-24", env=env)
    assert worked.exit_code == 0, worked.output
    assert "Worker stopped: 24 sent" in worked.stdout
    assert len(outbox(tmp_path)) == 24
    status = run("issue", "status", "--date", "2026-11-24", env=env).stdout
    assert "sent" in status and "24 sent" in status
    refused = run("issue", "cancel", "--date", "2026-11-24", "--yes", env=env)
    assert refused.exit_code == 1
    assert "already sent; it cannot be cancelled" in refused.stderr


def test_two_sends_racing_to_build_the_same_edition_both_succeed(
    app_factory: Callable[..., App],
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = edition_app_without_build(app_factory, database_url)
    second = app_factory(database_url=database_url)
    barrier = threading.Barrier(2, timeout=30)
    real_build = Editions.build

    def build_together(editions: Editions, **options: object) -> object:
        assert options.get("create_only") is True  # a send never rebuilds what another just built
        barrier.wait()  # both found no edition; both build it now
        return real_build(editions, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(Editions, "build", build_together)
    outcomes: list[object] = []
    threads = [
        threading.Thread(
            target=lambda app=app: outcomes.append(
                app.sending.send(edition_date=EDITION, now=FIXED_NOW, clock=lambda: FIXED_NOW)
            )
        )
        for app in (first, second)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(outcomes) == 2  # neither raised
    assert len(outbox(tmp_path)) == 5  # one copy each
    with first.database.transaction(readonly=True) as session:
        assert session.scalars(select(Issue.status)).one() is IssueStatus.SENT


def edition_app_without_build(app_factory: Callable[..., App], database_url: str) -> App:
    app = app_factory(database_url=database_url)
    app.sources.fetch(now=FIXED_NOW)
    with app.database.transaction() as session:
        for number in range(5):
            add_subscriber(session, f"reader{number}@example.com", confirmed=True)
    return app
