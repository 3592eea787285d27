"""PostgreSQL's pooled connections: checked with a round trip only after they sat idle.

A connection whose server process went away while it sat in the pool (a restart, a proxy's idle
timeout) must be replaced before a transaction uses it; a connection in steady use is handed out
without a ping, so a busy page or worker pays no extra round trip per transaction.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text

from newsletter import db
from newsletter.db import Database
from newsletter.errors import DatabaseError

pytestmark = pytest.mark.postgres


@pytest.fixture
def database(postgres_server_url: str) -> Iterator[Database]:
    database = Database.from_url(postgres_server_url)
    yield database
    database.dispose()


def backend_pid(database: Database) -> int:
    with database.transaction() as session:
        return int(session.execute(text("SELECT pg_backend_pid()")).scalar_one())


def terminate(postgres_server_url: str, pid: int) -> None:
    """End one server process from outside, as a restart or an idle timeout would."""
    admin = create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            assert connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            for _ in range(100):  # the process ends a moment after the call returns
                gone = connection.execute(
                    text("SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = :pid"),
                    {"pid": pid},
                ).scalar_one()
                if gone:
                    break
                time.sleep(0.02)
    finally:
        admin.dispose()


def test_a_dead_connection_idle_in_the_pool_is_replaced_unseen(
    database: Database, postgres_server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0.05)
    first = backend_pid(database)
    terminate(postgres_server_url, first)
    time.sleep(0.1)

    second = backend_pid(database)  # no error: the ping found it dead, the pool reconnected

    assert second != first


def test_a_connection_in_steady_use_is_not_pinged(
    database: Database, postgres_server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same dead connection, checked out again before the idle threshold: no ping, so the
    # transaction meets the dead connection itself. This is the round trip the threshold saves; the
    # pool then discards the connection and the next transaction gets a new one.
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 3600.0)
    first = backend_pid(database)
    terminate(postgres_server_url, first)

    with pytest.raises(DatabaseError):
        backend_pid(database)
    assert backend_pid(database) != first
