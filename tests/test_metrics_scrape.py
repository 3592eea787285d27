"""Issue 10, finding 8: /metrics is no enumeration oracle, and a scrape does not scan the ledger.

A stranger who scrapes before and after submitting the form must see the same change whether the
address was new, pending or confirmed; the delivery gauges are read from the counts the triggers
keep (checked against the ledger), and no statement of a scrape reads the deliveries table beyond an
index range (checked with the database's own query plans, on SQLite and PostgreSQL).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

from sqlalchemy import event, func, select, text
from sqlalchemy.engine import Engine

from newsletter.models import Delivery
from tests.conftest import FIXED_NOW
from tests.web_fixtures import Web, web, web_factory

__all__ = ["web", "web_factory"]

EDITION = date(2026, 11, 24)
SERIES = re.compile(r"^(\w+(?:\{[^}]*\})?) (\S+)$")


def scrape(web: Web, headers: dict[str, str] | None = None) -> dict[str, float]:
    answer = web.client.get("/metrics", headers=headers or {})
    assert answer.status_code == 200
    values = {}
    for line in answer.text.splitlines():
        match = SERIES.match(line)
        if match and "_duration_seconds" not in line and "start_time" not in line:
            values[match.group(1)] = float(match.group(2))
    return values


def change(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    keys = before.keys() | after.keys()
    moved = {key: after.get(key, 0.0) - before.get(key, 0.0) for key in keys}
    return {key: value for key, value in moved.items() if value}


def test_finding_8_public_metrics_answer_alike_for_new_pending_and_known_addresses(
    web: Web,
) -> None:
    web.subscribed("known@example.com")
    start = scrape(web)
    assert web.subscribe("fresh@example.com").status_code == 303  # new
    after_new = scrape(web)
    assert web.subscribe("fresh@example.com").status_code == 303  # pending
    after_pending = scrape(web)
    assert web.subscribe("known@example.com").status_code == 303  # already confirmed
    after_known = scrape(web)
    first = change(start, after_new)
    assert first  # the scrape does count signups (a total)
    assert change(after_new, after_pending) == first
    assert change(after_pending, after_known) == first
    text = web.client.get("/metrics").text
    for word in ('"new"', '"already"', '"pending"', '"resubscribed"', "newsletter_subscribers"):
        assert word not in text


def test_finding_8_the_admin_scrape_has_the_details(web: Web) -> None:
    web.subscribed("known@example.com")
    web.subscribe("known@example.com")
    detailed = scrape(web, web.admin())
    assert detailed['newsletter_signup_outcomes_total{outcome="new"}'] == 1
    assert detailed['newsletter_signup_outcomes_total{outcome="already"}'] == 1
    assert detailed['newsletter_subscribers{status="confirmed"}'] == 1
    wrong = web.client.get("/metrics", headers={"Authorization": "Bearer wrong"}).text
    assert "newsletter_signup_outcomes_total" not in wrong


def ledger_counts(web: Web) -> dict[str, float]:
    with web.app.database.transaction(readonly=True) as session:
        rows = session.execute(select(Delivery.status, func.count()).group_by(Delivery.status))
        return {status.value: float(count) for status, count in rows}


def delivery_gauges(web: Web) -> dict[str, float]:
    values = scrape(web)
    found = {}
    for key, value in values.items():
        match = re.fullmatch(r'newsletter_deliveries\{status="(\w+)"\}', key)
        if match and value:
            found[match.group(1)] = value
    return found


def test_finding_8_delivery_gauges_follow_every_ledger_write(
    web_factory: Callable[..., Web], database_url: str
) -> None:
    web = web_factory(database_url)
    for n in range(6):
        web.subscribed(f"reader{n}@example.com")
    outcome = web.app.sending.send(edition_date=EDITION, now=FIXED_NOW)
    assert outcome.enqueued == 6
    assert delivery_gauges(web) == ledger_counts(web) == {"sent": 6.0}
    # a delete takes the subscriber's ledger rows with it
    reader = web.subscriber("reader0@example.com")
    assert reader is not None
    deleted = web.client.delete(f"/api/subscribers/{reader.id}", headers=web.admin())
    assert deleted.status_code == 204
    # and an edition queued but not sent yet
    with web.app.database.transaction() as session:
        session.execute(
            Delivery.__table__.update()
            .where(Delivery.subscriber_id == web.subscriber("reader1@example.com").id)  # type: ignore[union-attr]
            .values(status="failed")
        )
    assert delivery_gauges(web) == ledger_counts(web) == {"sent": 4.0, "failed": 1.0}


@contextmanager
def statements(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _plan_nodes(child)


# Partial indexes of queued rows: reading one whole is reading the backlog, not the ledger.
QUEUED_ONLY = {
    index.name
    for index in Delivery.__table__.indexes
    if "queued" in str(index.dialect_options["postgresql"]["where"])
}


assert QUEUED_ONLY, "the ledger has partial indexes of queued rows"


def ledger_reads(engine: Engine, statement: str, parameters: Any) -> list[str]:
    """How ``statement`` reads the deliveries table, in the database's own plan; one entry a read."""
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            # With sequential scans priced out, a statement still planned with one has no index
            # that serves it; an index read without a condition is a full scan as well.
            connection.execute(text("SET enable_seqscan = off"))
            raw = connection.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, parameters)
            plan = raw.scalar_one()
            plan = json.loads(plan) if isinstance(plan, str) else plan
            reads = []
            for node in _plan_nodes(plan[0]["Plan"]):
                if node.get("Relation Name") == "deliveries" or "deliveries" in str(
                    node.get("Index Name", "")
                ):
                    bounded = (
                        "Index Cond" in node
                        or node["Node Type"] == "Bitmap Heap Scan"
                        or node.get("Index Name") in QUEUED_ONLY
                    )
                    reads.append(f"{node['Node Type']}:{'range' if bounded else 'full'}")
            return reads
        rows = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
        return [
            (
                "SEARCH:range"
                if row[-1].startswith("SEARCH")
                or any(f"INDEX {name}" in row[-1] for name in QUEUED_ONLY)
                else "SCAN:full"
            )
            for row in rows
            if re.search(r"\bdeliveries\b", row[-1])
        ]


def test_finding_8_a_scrape_does_not_scan_the_deliveries_table(
    web_factory: Callable[..., Web], database_url: str
) -> None:
    web = web_factory(database_url)
    for n in range(3):
        web.subscribed(f"reader{n}@example.com")
    web.app.sending.send(edition_date=EDITION, now=FIXED_NOW)
    engine = web.app.database.engine
    for headers in ({}, web.admin()):
        with statements(engine) as seen:
            assert web.client.get("/metrics", headers=headers).status_code == 200
        on_ledger = [(s, p) for s, p in seen if re.search(r"\bdeliveries\b", s)]
        assert on_ledger  # the scrape does read the ledger's figures (the backlog, the send rate)
        for statement, parameters in on_ledger:
            reads = ledger_reads(engine, statement, parameters)
            assert reads and all(read.endswith(":range") for read in reads), (statement, reads)
