"""The ledger's clocks: the exact retry backoff per attempt (with its cap), and a lease long enough
for a worker to send its whole batch before anyone else may take it."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import select

from newsletter.bootstrap import App
from newsletter.delivery import ledger
from newsletter.editions import start_sending
from newsletter.models import Delivery, DeliveryStatus, Issue
from subscribers.service import add_subscriber
from tests.conftest import FIXED_NOW

EDITION = date(2026, 11, 24)
#: The longest wait before attempt n+1, in minutes: 2 min doubling, capped at 2 h.
CEILING_MINUTES = {1: 2, 2: 4, 3: 8, 4: 16, 5: 32, 6: 64, 7: 120, 8: 120, 12: 120, 40: 120}


class Fixed(random.Random):
    """A random source that always draws the same value (0.0 or the top of the range)."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def random(self) -> float:
        return self.value


@pytest.mark.parametrize(("attempts", "minutes"), sorted(CEILING_MINUTES.items()))
def test_backoff_bounds_per_attempt_and_its_cap(attempts: int, minutes: int) -> None:
    ceiling = timedelta(minutes=minutes)
    assert ledger.backoff(attempts, rng=Fixed(0.0)) == ceiling / 2
    assert ledger.backoff(attempts, rng=Fixed(1.0)) == ceiling
    for draw in (0.25, 0.5, 0.999):
        assert ceiling / 2 <= ledger.backoff(attempts, rng=Fixed(draw)) <= ceiling


def test_a_recorded_retry_waits_within_the_bounds_of_its_attempt(
    app_factory: Callable[..., App], database_url: str
) -> None:
    app = app_factory(database_url=database_url)
    app.sources.fetch(now=FIXED_NOW)
    issue_id = app.editions.build(edition_date=EDITION, now=FIXED_NOW).issue_id
    with app.database.transaction() as session:
        add_subscriber(session, "reader@example.com", confirmed=True)
        ledger.enqueue_issue(session, issue_id, now=FIXED_NOW, not_before=FIXED_NOW)
    now = FIXED_NOW
    for attempt in range(1, 13):
        with app.database.transaction() as session:
            (item,) = ledger.claim_batch(
                session, issue_id, owner="w", size=1, now=now, lease=timedelta(minutes=5)
            )
            assert item.attempts == attempt
            ledger.record(
                session,
                [
                    ledger.Recorded(
                        item.delivery_id,
                        item.subscriber_id,
                        "retry",
                        item.attempts,
                        detail="451 4.7.1 later",
                        queued_at=now,  # young enough: only the attempt count matters here
                    )
                ],
                owner="w",
                now=now,
                max_attempts=100,
            )
        with app.database.transaction(readonly=True) as session:
            row = session.scalars(select(Delivery)).one()
        assert row.status is DeliveryStatus.QUEUED
        ceiling = timedelta(minutes=CEILING_MINUTES.get(attempt, 120))
        assert ceiling / 2 <= row.not_before - now <= ceiling, attempt
        now = row.not_before


def test_the_configured_lease_outlasts_a_batch_sent_at_one_message_a_second(
    app_factory: Callable[..., App], database_url: str
) -> None:
    """While a worker sends a full batch slowly (one message a second: a slow relay), a second
    worker finds nothing to take. A lease shorter than the batch's sending time fails this: the
    rival would reclaim and re-send rows that are on their way."""
    app = app_factory(database_url=database_url)
    batch_size = app.settings.batch_size
    app.sources.fetch(now=FIXED_NOW)
    issue_id = app.editions.build(edition_date=EDITION, now=FIXED_NOW).issue_id
    with app.database.transaction() as session:
        for number in range(batch_size):
            add_subscriber(session, f"reader{number}@example.com", confirmed=True)
        start_sending(session.get_one(Issue, issue_id), now=FIXED_NOW)
        ledger.enqueue_issue(session, issue_id, now=FIXED_NOW, not_before=FIXED_NOW)
    clock = [FIXED_NOW]
    stolen: list[tuple[datetime, int]] = []

    def one_second_per_message(result: ledger.Recorded) -> None:
        clock[0] += timedelta(seconds=1)
        with app.database.transaction() as session:  # what a second worker does meanwhile
            ledger.reap_expired(session, issue_id, now=clock[0])
            rival = ledger.claim_batch(
                session,
                issue_id,
                owner="rival",
                size=batch_size,
                now=clock[0],
                lease=timedelta(seconds=app.settings.lease_seconds),
            )
        if rival:
            stolen.append((clock[0], len(rival)))

    transport = app.transport()
    sender = app.sender(transport, clock=lambda: clock[0], on_result=one_second_per_message)
    with app.database.transaction(readonly=True) as session:
        issue = session.get_one(Issue, issue_id)
    report = sender.deliver(issue)
    sender.close()
    assert stolen == []
    assert report.batches == 1 and report.sent == batch_size and report.finished
    assert clock[0] - FIXED_NOW == timedelta(seconds=batch_size)
