"""The cost of a /metrics scrape at a large ledger, on PostgreSQL.

Migrates a throwaway database, fills it with ``--subscribers`` confirmed subscribers and
``--editions`` sent editions (one delivery each: 100,000 x 20 = 2,000,000 delivery rows by default,
written with ``INSERT ... SELECT`` so that the triggers of migration 0008 keep ``delivery_counts`` as
they do in production), then times, each ``--repeat`` times (the median is reported):

* ``ledger GROUP BY``: ``SELECT status, count(*) FROM deliveries GROUP BY status`` plus the send rate
  of the last five minutes over ``sent_at``: what every scrape ran before migration 0008;
* ``delivery gauges``: :func:`newsletter.services.metrics.delivery_gauges`, what a scrape runs now;
* ``public scrape`` and ``admin scrape``: ``GET /metrics`` on the real app, in process, without and
  with the admin token (the admin scrape also counts subscribers by status);
* ``GET /api/stats``: the admin API's subscriber and edition counts. Target for the three requests:
  under 50 ms each.

It also reports what the triggers add to writing the ledger: one more edition enqueued to every
subscriber and marked sent (then rolled back), with the triggers on and off.

Usage (from the project root)::

    uv run --locked python benchmarks/metrics.py
    uv run --locked python benchmarks/metrics.py --subscribers 10000 --editions 5

PostgreSQL comes from ``NEWSLETTER_TEST_POSTGRES_URL`` (default: the local test server).
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from newsletter import migrate  # noqa: E402
from newsletter.bootstrap import bootstrap  # noqa: E402
from newsletter.config import load_settings  # noqa: E402
from newsletter.db import Database  # noqa: E402
from newsletter.services.metrics import delivery_gauges  # noqa: E402
from newsletter.web import create_app  # noqa: E402

SERVER = os.environ.get(
    "NEWSLETTER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
TOKEN = secrets.token_hex(32)


def timed(work: Callable[[], object], repeat: int) -> float:
    work()  # warm the caches: every figure is of a warm database
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def fill(database: Database, *, subscribers: int, editions: int) -> float:
    started = time.perf_counter()
    with database.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO subscribers (email, email_key, status, format, created_at, "
                "status_changed_at, link_key) "
                "SELECT 'reader' || n || '@example.com', 'reader' || n || '@example.com', 'confirmed', "
                "'html', now(), now(), md5(random()::text) FROM generate_series(1, :n) AS n"
            ),
            {"n": subscribers},
        )
        for day in range(editions):
            edition = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=day)
            issue_id = connection.execute(
                text(
                    "INSERT INTO issues (edition_date, status, subject, preheader, created_at, built_at, sent_at) "
                    "VALUES (:d, 'sent', 'Subject', 'Preheader', :t, :t, :t) RETURNING id"
                ),
                {"d": edition.date(), "t": edition},
            ).scalar_one()
            connection.execute(
                text(
                    "INSERT INTO deliveries (issue_id, subscriber_id, status, not_before, attempts, "
                    "created_at, sent_at) SELECT :i, id, 'sent', :t, 1, :t, :t FROM subscribers"
                ),
                {"i": issue_id, "t": edition},
            )
    with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE"))
    return time.perf_counter() - started


def write_cost(database: Database, *, triggers: bool) -> float:
    """Enqueue one more edition to everyone and mark it sent, then roll back: the ledger's writes."""
    with database.engine.connect() as connection, connection.begin() as transaction:
        if not triggers:
            connection.execute(text("ALTER TABLE deliveries DISABLE TRIGGER USER"))
        issue_id = connection.execute(
            text(
                "INSERT INTO issues (edition_date, status, subject, preheader, created_at, built_at) "
                "VALUES ('2030-01-01', 'sending', 'S', 'P', now(), now()) RETURNING id"
            )
        ).scalar_one()
        started = time.perf_counter()
        connection.execute(
            text(
                "INSERT INTO deliveries (issue_id, subscriber_id, status, not_before, attempts, "
                "created_at) SELECT :i, id, 'queued', now(), 0, now() FROM subscribers"
            ),
            {"i": issue_id},
        )
        connection.execute(
            text("UPDATE deliveries SET status = 'sent', sent_at = now() WHERE issue_id = :i"),
            {"i": issue_id},
        )
        seconds = time.perf_counter() - started
        transaction.rollback()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--editions", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    name = f"newsletter_bench_metrics_{secrets.token_hex(4)}"
    admin = create_engine(SERVER, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = SERVER.rsplit("/", 1)[0] + "/" + name
    try:
        database = Database.from_url(url)
        migrate.upgrade(database)
        seconds = fill(database, subscribers=args.subscribers, editions=args.editions)
        rows = args.subscribers * args.editions
        print(f"{rows:,} delivery rows written in {seconds:.1f} s")

        def before() -> None:
            # the statements of a scrape before 0008, on the ledger as it was (no index on sent_at)
            with database.engine.connect() as connection, connection.begin() as transaction:
                connection.execute(text("DROP INDEX ix_deliveries_sent_at"))
                connection.execute(
                    text("SELECT status, count(*) FROM deliveries GROUP BY status")
                ).all()
                connection.execute(
                    text(
                        "SELECT count(*) FROM deliveries WHERE status = 'sent' "
                        "AND sent_at >= now() - interval '5 minutes'"
                    )
                ).all()
                transaction.rollback()

        def now_gauges() -> None:
            with database.transaction(readonly=True) as session:
                delivery_gauges(session, now=datetime.now(UTC))

        settings = load_settings(
            ROOT / "examples" / "demo.toml",
            database_url=url,
            admin_token=TOKEN,
            outbox_dir=Path(tempfile.mkdtemp(prefix="newsletter-bench-outbox-")),
        )
        app = bootstrap(settings)
        client = TestClient(create_app(app))
        auth = {"Authorization": f"Bearer {TOKEN}"}
        results = {
            "ledger GROUP BY (before 0008)": timed(before, args.repeat),
            "delivery gauges (now)": timed(now_gauges, args.repeat),
            "public scrape GET /metrics": timed(lambda: client.get("/metrics"), args.repeat),
            "admin scrape GET /metrics": timed(
                lambda: client.get("/metrics", headers=auth), args.repeat
            ),
            "GET /api/stats": timed(lambda: client.get("/api/stats", headers=auth), args.repeat),
        }
        for label, value in results.items():
            target = ""
            if "GET" in label:
                target = f"  target < 50 ms: {'held' if value < 0.050 else 'NOT held'}"
            print(f"{label:32} {value * 1000:9.1f} ms (median of {args.repeat}){target}")
        for triggers in (False, True):
            seconds = statistics.median(
                write_cost(database, triggers=triggers) for _ in range(args.repeat)
            )
            print(
                f"enqueue + mark sent of {args.subscribers:,} rows, triggers "
                f"{'on ' if triggers else 'off'}: {seconds * 1000:9.1f} ms"
            )
        client.close()
        app.close()
        database.dispose()
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
