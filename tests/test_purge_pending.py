"""Issue 10, finding 17: signups never confirmed are purged after the confirmation window plus a grace
period, keeping no address: by ``newsletter subscribers purge-pending`` and by the scheduler."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from click.testing import CliRunner
from sqlalchemy import inspect, text

from newsletter.bootstrap import App
from newsletter.cli import cli
from newsletter.scheduler import DailyPlan
from subscribers import signup
from subscribers.model import SubscriberStatus
from subscribers.service import get_by_email

NOW = datetime.now(UTC)


def _signup(app: App, address: str, at: datetime, *, confirm: bool = False) -> None:
    consent = signup.Consent(at=at, ip="192.0.2.9", user_agent="UA", source="web", wording="v1")
    with app.database.transaction() as session:
        result = signup.request(session, address, consent=consent)
        if confirm:
            signup.confirm(
                session, result.subscriber_id, nonce=result.nonce, ip=None, user_agent=None, now=at
            )


def _seed(app: App) -> None:
    window = timedelta(hours=app.settings.confirm_token_hours)
    grace = timedelta(days=app.settings.pending_grace_days)
    _signup(app, "stale@example.com", NOW - window - grace - timedelta(hours=1))
    _signup(app, "recent@example.com", NOW - window - grace + timedelta(hours=1))
    _signup(app, "kept@example.com", NOW - timedelta(days=400), confirm=True)


def _addresses(app: App) -> str:
    """Every value of every row of every table, as one lower-case text."""
    found = []
    with app.database.transaction(readonly=True) as session:
        for table in inspect(session.get_bind()).get_table_names():
            for row in session.execute(text(f'SELECT * FROM "{table}"')):
                found.append(" ".join(str(value) for value in row))
    return "\n".join(found).lower()


def test_finding_17_purge_pending_command_with_dry_run(
    app_factory: Callable[..., App], database_url: str
) -> None:
    app = app_factory(database_url=database_url)
    _seed(app)
    env = {
        "NEWSLETTER_CONFIG": "examples/demo.toml",
        "NEWSLETTER_DATABASE_URL": database_url,
        "NEWSLETTER_OUTBOX_DIR": str(app.settings.outbox_dir),
    }
    dry = CliRunner().invoke(cli, ["subscribers", "purge-pending", "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    assert "1 pending signup" in dry.output and "would" in dry.output
    assert "stale@example.com" in _addresses(app)

    done = CliRunner().invoke(cli, ["subscribers", "purge-pending"], env=env)
    assert done.exit_code == 0, done.output
    assert "Purged 1 pending signup" in done.output
    held = _addresses(app)
    assert "stale@example.com" not in held
    assert "recent@example.com" in held
    with app.database.transaction(readonly=True) as session:
        assert get_by_email(session, "kept@example.com").status is SubscriberStatus.CONFIRMED


def test_finding_17_the_scheduler_purges_pending_signups(
    app_factory: Callable[..., App], database_url: str
) -> None:
    app = app_factory(database_url=database_url)
    _seed(app)
    plan = DailyPlan(app, clock=lambda: NOW)
    assert plan.purge(NOW) == 1
    assert "stale@example.com" not in _addresses(app)
    assert "recent@example.com" in _addresses(app)
    # Once an hour is enough: a tick a minute later does not query again.
    assert plan.purge(NOW + timedelta(minutes=1)) == 0
    later = NOW + timedelta(hours=2)
    assert plan.purge(later) == 1  # recent@ is now past the window plus grace too
