"""Waiting for a database that went away: what is retried, what is not, and for how long."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.exc import OperationalError

from newsletter.delivery.recording import database_away, persist
from newsletter.errors import DatabaseError


def _dropped() -> OperationalError:
    return OperationalError("UPDATE deliveries", {}, Exception("server closed the connection"))


def test_work_is_run_again_until_the_database_is_back() -> None:
    calls: list[int] = []
    pauses: list[float] = []

    def work() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise _dropped()
        return "written"

    assert persist(work, sleep=pauses.append) == "written"
    assert len(calls) == 4
    assert pauses == sorted(pauses) and pauses[0] > 0  # backing off


def test_an_error_of_the_work_itself_is_raised_at_once() -> None:
    calls: list[int] = []

    def work() -> None:
        calls.append(1)
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError, match="a bug"):
        persist(work, sleep=lambda _: None)
    assert len(calls) == 1


def test_a_database_away_for_longer_than_the_patience_is_an_error() -> None:
    def work() -> None:
        raise DatabaseError("cannot connect to the database") from _dropped()

    with pytest.raises(DatabaseError, match="cannot connect"):
        persist(work, patience=timedelta(0), sleep=lambda _: None)


def test_what_counts_as_the_database_being_away() -> None:
    wrapped = DatabaseError("cannot connect")
    wrapped.__cause__ = _dropped()
    assert database_away(_dropped())
    assert database_away(wrapped)
    assert not database_away(DatabaseError("the database is not set up"))
    assert not database_away(ValueError("no"))
