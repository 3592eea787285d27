"""Storage on SQLite and PostgreSQL: migrations, constraints, time zones, transactions, errors."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError

from kernel import Base
from newsletter import migrate
from newsletter.db import Database, redact
from newsletter.errors import DatabaseError
from newsletter.models import Delivery, DeliveryStatus, Issue, IssueStatus
from subscribers.model import Subscriber, SubscriberStatus
from subscribers.service import add_subscriber

NOW = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
TABLES = {
    "subscribers",
    "articles",
    "market_snapshots",
    "issues",
    "issue_articles",
    "issue_variants",
    "deliveries",
}


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = Database.from_url(database_url)
    yield db
    db.dispose()


def make_issue(session, day: date = date(2026, 11, 24)) -> Issue:  # type: ignore[no-untyped-def]
    issue = Issue(
        edition_date=day, status=IssueStatus.DRAFT, subject="s", created_at=NOW, built_at=NOW
    )
    session.add(issue)
    session.flush()
    return issue


def test_migrations_create_every_table_at_head(database: Database) -> None:
    assert set(inspect(database.engine).get_table_names()) >= TABLES
    assert migrate.current_revision(database) == migrate.head_revision(database)


def test_upgrade_is_idempotent(database: Database) -> None:
    before, after = migrate.upgrade(database)
    assert before == after == migrate.head_revision(database)


def test_models_and_migrations_agree(database: Database) -> None:
    """A model change without a migration fails here."""
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    database = Database.from_url(f"sqlite:///{tmp_path / 'nested' / 'db.sqlite'}")
    migrate.upgrade(database)
    with database.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    database.dispose()


def test_one_edition_per_date(database: Database) -> None:
    with database.transaction() as session:
        make_issue(session)
    with pytest.raises(IntegrityError), database.transaction() as session:
        make_issue(session)


def test_one_delivery_per_edition_and_subscriber(database: Database) -> None:
    with database.transaction() as session:
        issue = make_issue(session)
        subscriber, _ = add_subscriber(session, "reader@example.com", confirmed=True)
        ids = (issue.id, subscriber.id)
        session.add(Delivery(issue_id=ids[0], subscriber_id=ids[1], not_before=NOW))
    with pytest.raises(IntegrityError), database.transaction() as session:
        session.add(Delivery(issue_id=ids[0], subscriber_id=ids[1], not_before=NOW))
    with database.transaction() as session:
        assert session.scalar(select(Delivery.status)) is DeliveryStatus.QUEUED


def test_foreign_keys_are_enforced(database: Database) -> None:
    with pytest.raises(IntegrityError), database.transaction() as session:
        issue = make_issue(session)
        session.add(Delivery(issue_id=issue.id, subscriber_id=999_999, not_before=NOW))
        session.flush()


def test_addresses_are_unique_case_insensitively(database: Database) -> None:
    with database.transaction() as session:
        add_subscriber(session, "Reader@Example.com")
    with pytest.raises(IntegrityError), database.transaction() as session:
        session.add(
            Subscriber(email="reader@EXAMPLE.com", email_key="reader@example.com", created_at=NOW)
        )


def test_times_come_back_in_utc(database: Database) -> None:
    east = timezone(timedelta(hours=9))
    with database.transaction() as session:
        subscriber, _ = add_subscriber(
            session, "tokyo@example.com", now=datetime(2026, 11, 24, 15, 0, tzinfo=east)
        )
        subscriber_id = subscriber.id
    with database.transaction() as session:
        stored = session.get_one(Subscriber, subscriber_id)
        assert stored.created_at == datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
        assert stored.created_at.tzinfo is not None
        assert stored.status is SubscriberStatus.PENDING


def test_a_failed_transaction_leaves_nothing(database: Database) -> None:
    with pytest.raises(RuntimeError), database.transaction() as session:
        add_subscriber(session, "ghost@example.com")
        raise RuntimeError("boom")
    with database.transaction() as session:
        assert session.scalar(select(Subscriber)) is None


def test_unmigrated_database_says_what_to_do(tmp_path: Path) -> None:
    database = Database.from_url(f"sqlite:///{tmp_path / 'empty.db'}")
    with (
        pytest.raises(DatabaseError, match="newsletter db upgrade"),
        database.transaction() as session,
    ):
        session.execute(select(Subscriber))
    database.dispose()


@pytest.mark.parametrize("url", ["mysql://root@localhost/x", "oracle://a@b/c", "not a url"])
def test_unsupported_urls_are_refused(url: str) -> None:
    with pytest.raises(DatabaseError, match=r"NEWSLETTER_DATABASE_URL|cannot parse"):
        Database.from_url(url)


def test_unreachable_server_is_explained() -> None:
    database = Database.from_url(
        "postgresql+psycopg://nobody:secret@127.0.0.1:1/none?connect_timeout=2"
    )
    with pytest.raises(DatabaseError) as raised, database.transaction() as session:
        session.execute(text("SELECT 1"))
    message = str(raised.value)
    assert "cannot connect" in message
    assert "secret" not in message
    database.dispose()


def test_redact_hides_passwords() -> None:
    assert "hunter2" not in redact("postgresql+psycopg://user:hunter2@db.example/news")
