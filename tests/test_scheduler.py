"""The daily plan with a controllable clock: timing, time zones, DST, catch-up, duplicates, 3 days."""

from __future__ import annotations

import email
import email.policy
import logging
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select

from newsletter.bootstrap import App
from newsletter.models import Delivery, DeliveryStatus, Issue, IssueStatus
from newsletter.scheduler import DailyPlan
from subscribers.service import add_subscriber
from tests.conftest import SmtpServer


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def deliver_due(app: App, now: datetime) -> int:
    """What a worker does at ``now``: deliver every due row of every edition being sent."""
    sent = 0
    transport = app.transport()
    sender = app.sender(transport, clock=lambda: now)
    with app.database.transaction(readonly=True) as session:
        issues = session.scalars(select(Issue).where(Issue.status == IssueStatus.SENDING)).all()
    for issue in issues:
        sent += sender.deliver(issue).sent
    sender.close()
    transport.close()
    return sent


def editions(app: App) -> dict[date, IssueStatus]:
    with app.database.transaction(readonly=True) as session:
        return dict(session.execute(select(Issue.edition_date, Issue.status)).all())


def readers(app: App, *zones: tuple[str, str | None, int | None]) -> None:
    with app.database.transaction() as session:
        for email_address, zone, hour in zones:
            subscriber, _ = add_subscriber(session, email_address, confirmed=True, timezone=zone)
            subscriber.send_hour = hour


@pytest.fixture
def scheduled(app_factory: Callable[..., App], sqlite_url: str) -> Callable[..., App]:
    def make(**overrides: object) -> App:
        values: dict[str, object] = {
            "database_url": sqlite_url,
            "timezone": "Europe/Berlin",
            "send_time": "07:00",
            "build_lead_minutes": 30,
            "misfire_grace_minutes": 120,
        }
        values.update(overrides)
        return app_factory(**values)

    return make


def test_the_edition_is_built_before_and_sent_at_the_send_time(
    scheduled: Callable[..., App],
) -> None:
    app = scheduled()
    readers(app, ("berlin@example.com", None, None))
    plan = DailyPlan(app, clock=lambda: at("2026-11-24T00:00"))
    assert plan.tick(at("2026-11-24T05:20")) == []  # 06:20 Berlin: too early
    assert plan.tick(at("2026-11-24T05:30")) == ["2026-11-24: built", "2026-11-24: queued 1"]
    assert editions(app) == {date(2026, 11, 24): IssueStatus.SENDING}
    assert deliver_due(app, at("2026-11-24T05:59")) == 0  # not yet 07:00 in Berlin
    assert deliver_due(app, at("2026-11-24T06:00")) == 1
    assert editions(app)[date(2026, 11, 24)] is IssueStatus.SENT
    assert plan.tick(at("2026-11-24T06:05")) == []  # idempotent


def test_each_subscriber_gets_it_at_their_own_local_hour(scheduled: Callable[..., App]) -> None:
    app = scheduled()
    readers(
        app,
        ("tokyo@example.com", "Asia/Tokyo", 7),
        ("nyc@example.com", "America/New_York", 7),
        ("berlin@example.com", None, None),
    )
    plan = DailyPlan(app, clock=lambda: at("2026-11-23T00:00"))
    first = plan.plan(date(2026, 11, 24))
    assert first.earliest_send == at("2026-11-23T22:00")  # 07:00 in Tokyo, the evening before
    assert first.build_at == at("2026-11-23T21:30")
    plan.tick(at("2026-11-23T21:30"))
    with plan.app.database.transaction(readonly=True) as session:
        due = sorted(session.scalars(select(Delivery.not_before)))
    assert due == [at("2026-11-23T22:00"), at("2026-11-24T06:00"), at("2026-11-24T12:00")]
    assert deliver_due(app, at("2026-11-23T22:00")) == 1
    assert deliver_due(app, at("2026-11-24T06:00")) == 1
    assert deliver_due(app, at("2026-11-24T12:00")) == 1


@pytest.mark.parametrize(
    ("day", "utc_send"),
    [
        (date(2026, 3, 28), "2026-03-28T06:00"),  # winter time, UTC+1
        (date(2026, 3, 29), "2026-03-29T05:00"),  # clocks went forward overnight: UTC+2
        (date(2026, 10, 24), "2026-10-24T05:00"),  # summer time, UTC+2
        (date(2026, 10, 25), "2026-10-25T06:00"),  # clocks went back overnight: UTC+1
    ],
)
def test_local_send_time_is_right_across_dst(
    scheduled: Callable[..., App], day: date, utc_send: str
) -> None:
    app = scheduled()
    readers(app, ("berlin@example.com", "Europe/Berlin", 7))
    plan = DailyPlan(app, clock=lambda: at(utc_send))
    assert plan.plan(day).earliest_send == at(utc_send)
    build_at = at(utc_send) - timedelta(minutes=30)
    assert f"{day}: built" in plan.tick(build_at)
    assert deliver_due(app, at(utc_send) - timedelta(minutes=1)) == 0
    assert deliver_due(app, at(utc_send)) == 1


def test_a_missed_edition_is_caught_up_within_the_grace_window(
    scheduled: Callable[..., App], caplog: pytest.LogCaptureFixture
) -> None:
    app = scheduled()
    readers(app, ("berlin@example.com", None, None))
    late = at("2026-11-24T07:10")  # the process comes back 70 minutes after the 07:00 send
    with caplog.at_level(logging.WARNING):
        done = DailyPlan(app, clock=lambda: late).tick(late)
    assert done == ["2026-11-24: built", "2026-11-24: queued 1"]
    assert "is late" in caplog.text
    assert deliver_due(app, late) == 1


def test_an_edition_is_never_sent_after_its_grace_window(
    scheduled: Callable[..., App], caplog: pytest.LogCaptureFixture
) -> None:
    app = scheduled()
    readers(app, ("berlin@example.com", None, None))
    too_late = at("2026-11-24T08:30")  # 3 h 30 after the send: past the 2 h grace
    with caplog.at_level(logging.WARNING):
        plan = DailyPlan(app, clock=lambda: too_late)
        assert plan.tick(too_late) == []
        plan.tick(too_late + timedelta(minutes=1))
    assert date(2026, 11, 24) not in editions(app)
    assert caplog.text.count("not sent: its send time") == 1  # logged once, not every minute


def test_rows_queued_before_a_long_outage_are_not_sent_late(scheduled: Callable[..., App]) -> None:
    app = scheduled()
    readers(app, ("berlin@example.com", None, None))
    plan = DailyPlan(app, clock=lambda: at("2026-11-24T05:30"))
    plan.tick(at("2026-11-24T05:30"))
    back = at("2026-11-24T09:00")  # the worker was down from before 07:00 until 10:00 Berlin
    assert plan.tick(back) == ["2026-11-24: expired 1"]
    assert deliver_due(app, back) == 0
    with app.database.transaction(readonly=True) as session:
        assert session.scalar(select(Delivery.status)) is DeliveryStatus.FAILED


def test_two_schedulers_make_one_edition_and_one_delivery_each(
    app_factory: Callable[..., App], database_url: str
) -> None:
    settings = {"database_url": database_url, "timezone": "Europe/Berlin", "send_time": "07:00"}
    app = app_factory(**settings)
    other = app_factory(**settings)  # a second host, with its own engine, on the same database
    readers(app, *[(f"r{number}@example.com", None, None) for number in range(5)])
    now = at("2026-11-24T05:30")
    DailyPlan(app, clock=lambda: now).tick(now)
    DailyPlan(other, clock=lambda: now).tick(now)
    with app.database.transaction(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(Issue)) == 1
        assert session.scalar(select(func.count()).select_from(Delivery)) == 5


def test_a_warning_when_an_edition_is_not_out_by_its_deadline(
    scheduled: Callable[..., App], caplog: pytest.LogCaptureFixture
) -> None:
    app = scheduled(deadline_minutes=30)
    readers(app, ("berlin@example.com", None, None))
    plan = DailyPlan(app, clock=lambda: at("2026-11-24T05:30"))
    plan.tick(at("2026-11-24T05:30"))
    with caplog.at_level(logging.WARNING):
        plan.tick(at("2026-11-24T06:45"))  # no worker delivered anything
    assert "has not gone out by its deadline" in caplog.text


@pytest.mark.slow
def test_three_days_with_a_restart_send_one_edition_a_day_to_everyone(
    scheduled: Callable[..., App], smtp_server: SmtpServer
) -> None:
    smtp = {"transport": "smtp", "smtp_host": smtp_server.host, "smtp_port": smtp_server.port}
    app = scheduled(**smtp)
    people = [
        ("berlin@example.com", None, None),
        ("tokyo@example.com", "Asia/Tokyo", 7),
        ("sf@example.com", "America/Los_Angeles", 6),
        ("early@example.com", "Europe/Berlin", 5),
    ]
    readers(app, *people)
    clock = {"now": at("2026-11-23T12:00")}
    end = at("2026-11-26T21:00")  # before the 27th's edition is built for Tokyo
    plan = DailyPlan(app, clock=lambda: clock["now"])
    restarted = False
    while clock["now"] <= end:
        now = clock["now"]
        if not restarted and now >= at("2026-11-25T05:40"):
            app.close()  # the host restarts in the middle of an edition day
            app = scheduled(**smtp)
            plan = DailyPlan(app, clock=lambda: clock["now"])
            restarted = True
        plan.tick(now)
        deliver_due(app, now)
        clock["now"] = now + timedelta(minutes=20)
    assert restarted
    per_day = Counter()
    for received in smtp_server.messages:
        message = email.message_from_bytes(received.data, policy=email.policy.default)
        per_day[(received.recipients[0], str(message["Subject"]).rsplit("·", 1)[-1].strip())] += 1
    days = ("Tue 24 Nov", "Wed 25 Nov", "Thu 26 Nov")
    assert set(per_day.values()) == {1}
    assert set(per_day) == {(email_address, day) for email_address, _, _ in people for day in days}
    statuses = editions(app)
    assert all(statuses[date(2026, 11, day)] is IssueStatus.SENT for day in (24, 25, 26))
