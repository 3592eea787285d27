"""Subscriber and edition counts have one definition: the admin API, the admin's /metrics scrape
and the stats service give the same figures, on SQLite and PostgreSQL."""

from __future__ import annotations

import re

from newsletter.models import IssueStatus
from newsletter.services import stats
from subscribers import model
from subscribers.model import SubscriberStatus
from subscribers.service import add_subscriber, get_by_email
from tests.conftest import FIXED_NOW
from tests.web_fixtures import Web, web_db, web_factory

__all__ = ["web_db", "web_factory"]

_GAUGE = re.compile(r'^newsletter_subscribers\{status="(\w+)"\} (\S+)$', re.MULTILINE)
_PAUSED = re.compile(r"^newsletter_subscribers_paused (\S+)$", re.MULTILINE)


def _fill(web: Web) -> None:
    """Three confirmed (one paused), two pending, one unsubscribed, one bounced."""
    with web.app.database.transaction() as session:
        for n in range(3):
            add_subscriber(session, f"c{n}@example.com", confirmed=True, now=FIXED_NOW)
        for n in range(2):
            add_subscriber(session, f"p{n}@example.com", now=FIXED_NOW)
        add_subscriber(session, "u@example.com", confirmed=True, now=FIXED_NOW)
        add_subscriber(session, "b@example.com", confirmed=True, now=FIXED_NOW)
        session.flush()
        get_by_email(session, "c0@example.com").paused = True
        model.unsubscribe(get_by_email(session, "u@example.com"), now=FIXED_NOW)
        model.suppress(
            get_by_email(session, "b@example.com"),
            SubscriberStatus.BOUNCED,
            reason="test",
            now=FIXED_NOW,
        )


def test_the_api_the_admin_scrape_and_the_service_count_alike(web_db: Web) -> None:
    web = web_db
    _fill(web)
    overview = stats.overview(web.app.database)
    expected = {
        SubscriberStatus.CONFIRMED: 3,
        SubscriberStatus.PENDING: 2,
        SubscriberStatus.UNSUBSCRIBED: 1,
        SubscriberStatus.BOUNCED: 1,
        SubscriberStatus.COMPLAINED: 0,
    }
    assert overview.subscribers == expected
    assert overview.paused == 1
    assert overview.editions == dict.fromkeys(IssueStatus, 0)

    api = web.client.get("/api/stats", headers=web.admin()).json()
    assert api["subscribers"] == {status.value: count for status, count in expected.items()}
    assert api["paused"] == overview.paused
    assert api["suppressed_hashes"] == overview.suppressed_hashes
    assert api["editions"] == {status.value: 0 for status in IssueStatus}

    scrape = web.client.get("/metrics", headers=web.admin()).text
    gauges = {status: float(value) for status, value in _GAUGE.findall(scrape)}
    assert gauges == {status.value: float(n) for status, n in expected.items() if n}
    paused = _PAUSED.search(scrape)
    assert paused is not None and float(paused.group(1)) == overview.paused
