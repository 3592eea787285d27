"""The edition's and the delivery's state machines: every allowed and every forbidden move.

Issue 11: one function moves each, the allowed moves in one table; the edition state ``ready`` that
nothing set is gone (migration 0009); delivery outcomes are an enum with a deferred outcome.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from newsletter import migrate
from newsletter.db import Database
from newsletter.delivery import ledger
from newsletter.delivery.states import (
    DELIVERY_MOVES,
    bounce_delivery,
    move_delivery,
    move_rows,
    update_rows,
)
from newsletter.delivery.transports import Outcome
from newsletter.edition_states import EDITION_MOVES, move_edition
from newsletter.errors import DeliveryStateError, IssueStateError
from newsletter.models import Delivery, DeliveryStatus, Issue, IssueStatus
from subscribers.service import add_subscriber

NOW = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)

D, SG, ST, C = IssueStatus.DRAFT, IssueStatus.SENDING, IssueStatus.SENT, IssueStatus.CANCELLED
EDITION_ALLOWED = {(D, SG), (D, C), (SG, ST), (SG, C), (ST, SG)}

Q, S, OK, F, X = (
    DeliveryStatus.QUEUED,
    DeliveryStatus.SENDING,
    DeliveryStatus.SENT,
    DeliveryStatus.FAILED,
    DeliveryStatus.SUPPRESSED,
)
DELIVERY_ALLOWED = {
    (Q, S),  # claimed
    (Q, F),  # missed its send window, or the edition was cancelled
    (S, Q),  # retry later, paced, released, or its lease expired
    (S, OK),
    (S, F),  # refused for good, or gave up
    (S, X),  # the subscriber left after it was queued
    (OK, F),  # hard bounce after acceptance
    (X, F),  # hard bounce of a message accepted before a crash
    # an accepted message is recorded sent from any state (a late flush after the lease ran out)
    (Q, OK),
    (OK, OK),
    (F, OK),
    (X, OK),
}


def test_the_edition_table_is_exactly_the_documented_moves() -> None:
    table = {(source, target) for source, targets in EDITION_MOVES.items() for target in targets}
    assert table == EDITION_ALLOWED
    assert set(EDITION_MOVES) == set(IssueStatus)


def test_the_delivery_table_is_exactly_the_documented_moves() -> None:
    table = {(source, target) for source, targets in DELIVERY_MOVES.items() for target in targets}
    assert table == DELIVERY_ALLOWED
    assert set(DELIVERY_MOVES) == set(DeliveryStatus)


def test_ready_is_no_edition_state() -> None:
    assert {status.value for status in IssueStatus} == {"draft", "sending", "sent", "cancelled"}


def test_deferred_is_a_delivery_outcome() -> None:
    assert Outcome("deferred") is Outcome.DEFERRED
    assert ledger.Recorded(1, 1, "deferred", 1).outcome is Outcome.DEFERRED
    with pytest.raises(ValueError, match="ready"):
        ledger.Recorded(1, 1, "ready", 1)


def _issue(status: IssueStatus) -> Issue:
    return Issue(
        edition_date=date(2026, 11, 24),
        status=status,
        subject="s",
        created_at=NOW,
        built_at=NOW,
        sending_at=NOW,
        sent_at=NOW if status is ST else None,
    )


@pytest.mark.parametrize(
    ("source", "target"), list(itertools.product(IssueStatus, IssueStatus)), ids=str
)
def test_every_edition_move(source: IssueStatus, target: IssueStatus) -> None:
    issue = _issue(source)
    if (source, target) not in EDITION_ALLOWED:
        with pytest.raises(IssueStateError, match=f"is {source.value}; it cannot become"):
            move_edition(issue, target, now=LATER)
        assert issue.status is source
        return
    move_edition(issue, target, now=LATER)
    assert issue.status is target
    if target is ST:
        assert issue.sent_at == LATER
    if target is C:
        assert issue.cancelled_at == LATER
    # A follow-up send keeps the time the first send started.
    assert issue.sending_at == (LATER if (source, target) == (D, SG) else NOW)


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = Database.from_url(database_url)
    yield db
    db.dispose()


def _delivery(database: Database, status: DeliveryStatus) -> int:
    with database.transaction() as session:
        subscriber, _ = add_subscriber(session, "ann@example.com", confirmed=True, now=NOW)
        issue = Issue(
            edition_date=date(2026, 11, 24),
            status=SG,
            subject="s",
            created_at=NOW,
            built_at=NOW,
        )
        session.add(issue)
        session.flush()
        delivery = Delivery(
            issue_id=issue.id,
            subscriber_id=subscriber.id,
            status=status,
            not_before=NOW,
            created_at=NOW,
        )
        session.add(delivery)
        session.flush()
        return delivery.id


@pytest.mark.parametrize(
    ("source", "target"), list(itertools.product(DeliveryStatus, DeliveryStatus)), ids=str
)
def test_every_delivery_move_in_bulk_and_one_by_one(
    database: Database, source: DeliveryStatus, target: DeliveryStatus
) -> None:
    delivery_id = _delivery(database, source)
    allowed = (source, target) in DELIVERY_ALLOWED
    with database.transaction() as session:
        moved = move_rows(session, Delivery.id == delivery_id, to=target, last_error="moved")
    with database.transaction() as session:
        row = session.get_one(Delivery, delivery_id)
        assert (moved, row.status, row.last_error) == (
            (1, target, "moved") if allowed else (0, source, None)
        )
        row.status = source  # back, to move the loaded row
    with database.transaction() as session:
        row = session.get_one(Delivery, delivery_id)
        if allowed:
            move_delivery(row, target)
        else:
            with pytest.raises(DeliveryStateError, match=f"is {source.value}; it cannot become"):
                move_delivery(row, target)
    with database.transaction(readonly=True) as session:
        assert session.get_one(Delivery, delivery_id).status is (target if allowed else source)


def test_the_status_never_moves_unchecked(database: Database) -> None:
    with database.transaction() as session, pytest.raises(ValueError, match="move_rows"):
        update_rows(session, Delivery.id == 1, status=DeliveryStatus.SENT)


@pytest.mark.parametrize("source", list(DeliveryStatus), ids=str)
def test_a_hard_bounce_fails_any_delivery_with_its_reason(
    database: Database, source: DeliveryStatus
) -> None:
    delivery_id = _delivery(database, source)
    with database.transaction() as session:
        bounce_delivery(session.get_one(Delivery, delivery_id), detail="bounced: 5.1.1")
    with database.transaction(readonly=True) as session:
        row = session.get_one(Delivery, delivery_id)
        assert (row.status, row.last_error) == (F, "bounced: 5.1.1")


@pytest.mark.parametrize(
    ("outcome", "status", "attempts"),
    [
        (Outcome.SENT, OK, 1),
        (Outcome.RETRY, Q, 1),
        (Outcome.FAILED, F, 1),
        (Outcome.DEFERRED, Q, 0),  # paced: not an attempt
    ],
    ids=str,
)
def test_every_outcome_is_recorded(
    database: Database, outcome: Outcome, status: DeliveryStatus, attempts: int
) -> None:
    delivery_id = _delivery(database, Q)
    with database.transaction() as session:
        issue_id = session.get_one(Delivery, delivery_id).issue_id
        [claimed] = ledger.claim_batch(
            session, issue_id, owner="w", size=10, now=NOW, lease=timedelta(minutes=5)
        )
    with database.transaction() as session:
        ledger.record(
            session,
            [ledger.Recorded(delivery_id, claimed.subscriber_id, outcome, claimed.attempts)],
            owner="w",
            now=NOW,
            max_attempts=8,
        )
    with database.transaction(readonly=True) as session:
        row = session.get_one(Delivery, delivery_id)
        assert (row.status, row.attempts, row.lease_owner) == (status, attempts, None)


def test_migration_0009_turns_ready_editions_into_drafts_and_refuses_ready(
    database: Database,
) -> None:
    config = migrate.alembic_config(database)
    command.downgrade(config, "0008")
    try:
        with database.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO issues (edition_date, status, subject, preheader, created_at, "
                    "built_at) VALUES ('2026-11-24', 'ready', 's', '', :now, :now)"
                ),
                {"now": NOW},
            )
    finally:
        migrate.upgrade(database)
    with database.transaction(readonly=True) as session:
        assert session.scalars(select(Issue.status)).all() == [IssueStatus.DRAFT]
    with pytest.raises(IntegrityError), database.engine.begin() as connection:
        connection.execute(text("UPDATE issues SET status = 'ready'"))
