"""The ledger's capacity on PostgreSQL: claim → record with a transport that accepts at once.

No SMTP, no message: each worker process runs the sender's loop over the ledger alone, with the
project's own code paths and the sender's default sizes: in one transaction the edition is read,
expired leases are reaped and a batch of ``--batch`` rows is claimed
(:func:`newsletter.delivery.claims.claim_batch`, ``FOR UPDATE SKIP LOCKED``); every claimed row
is "accepted" at once and the outcomes are written back in flushes of ``--flush``
(:func:`newsletter.delivery.recording.record`), each in its own transaction, as
:class:`newsletter.delivery.sender.Sender` does. The delivery counts are kept by the triggers of
migration 0008, as in production.

For 1, 2, 4 and 8 worker processes (``--workers``) an edition of ``--deliveries`` rows is queued
(:func:`newsletter.delivery.ledger.enqueue_issue`) and sent; the clock runs from the moment every
process is connected and waiting to the last one's exit. Then ``--history`` rows of earlier
editions (default 10,000,000, all sent) are written with one ``INSERT … SELECT generate_series``
(the count triggers are switched off for that statement and ``delivery_counts`` is written from
the same figures, so that it stays exact) and the four runs are repeated.

It prints deliveries per second for each run, the ratio of each to one process, and the ratio with
the history to without. These figures are where one PostgreSQL, not the relays, would bound a
send; docs/deployment.md turns them into a sizing table.

Usage (from the project root)::

    uv run --locked python benchmarks/ledger.py
    uv run --locked python benchmarks/ledger.py --deliveries 20000 --history 1000000

PostgreSQL comes from ``--postgres-url`` (default ``$NEWSLETTER_TEST_POSTGRES_URL`` or the local
test server); the script creates a throwaway database and drops it at the end. The history needs
disk: about 2.5 GB for 10,000,000 rows with their indexes.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import secrets
import sys
import threading
import time
from datetime import UTC, date, datetime, timedelta
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier, Event
from pathlib import Path

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from newsletter import migrate  # noqa: E402
from newsletter.db import Database  # noqa: E402
from newsletter.delivery import ledger  # noqa: E402
from newsletter.delivery.transports import Outcome  # noqa: E402
from newsletter.models import Issue  # noqa: E402

SERVER = os.environ.get(
    "NEWSLETTER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process on this machine, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def backend_pids(database: Database) -> set[int]:
    """The PostgreSQL backends of every connection in the pool (opened before the clock starts)."""
    with database.engine.connect() as first, database.engine.connect() as second:
        return {
            int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())
            for connection in (first, second)
        }


def work(
    url: str,
    issue_id: int,
    batch: int,
    flush: int,
    ready: Barrier,
    go: Event,
    costs: Queue[tuple[float, float]],
) -> None:
    """One worker process: claim, accept everything at once, record; until nothing is left.

    Reports the CPU seconds it spent and those its PostgreSQL backends spent meanwhile."""
    database = Database.from_url(url)
    owner = f"bench-{os.getpid()}"
    with database.transaction(readonly=True) as session:  # connect before the clock starts
        session.get(Issue, issue_id)
    backends = backend_pids(database) if Path("/proc/self/stat").exists() else set()
    ready.wait()
    go.wait()
    own = time.process_time()
    server = {pid: cpu_seconds(pid) for pid in backends}
    while True:
        now = datetime.now(UTC)
        with database.transaction() as session:
            session.get(Issue, issue_id)
            ledger.reap_expired(session, issue_id, now=now)
            claimed = ledger.claim_batch(
                session, issue_id, owner=owner, size=batch, now=now, lease=timedelta(minutes=5)
            )
        if not claimed:
            break
        for start in range(0, len(claimed), flush):
            outcomes = [
                ledger.Recorded(
                    delivery_id=item.delivery_id,
                    subscriber_id=item.subscriber_id,
                    outcome=Outcome.SENT,
                    attempts=item.attempts,
                    message_id=f"<{issue_id}.{item.subscriber_id}@bench.example>",
                    variant_key="html",
                    queued_at=item.queued_at,
                    code=250,
                )
                for item in claimed[start : start + flush]
            ]
            with database.transaction() as session:
                ledger.record(session, outcomes, owner=owner, now=datetime.now(UTC), max_attempts=8)
    spent = sum(cpu_seconds(pid) - before for pid, before in server.items())
    costs.put((time.process_time() - own, spent))
    database.dispose()


def keep_statistics(url: str, stop: threading.Event, every: float) -> None:
    """What autovacuum does for the planner, on a server where it is off: ANALYZE the ledger once
    more than 50 rows + 10 % of it changed since the last time (its default thresholds), checked
    every ``every`` seconds (autovacuum's default naptime is 60 s)."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        while not stop.wait(every):
            changed, rows = connection.execute(
                text(
                    "SELECT n_mod_since_analyze, n_live_tup FROM pg_stat_user_tables "
                    "WHERE relname = 'deliveries'"
                )
            ).one()
            if changed > 50 + 0.1 * rows:
                connection.execute(text("ANALYZE deliveries"))
    engine.dispose()


def run(
    database: Database,
    url: str,
    *,
    workers: int,
    edition: date,
    batch: int,
    flush: int,
    analyze: float | None,
) -> tuple[int, float, float, float]:
    """Queue one edition to every subscriber and send it with ``workers`` processes; return the
    deliveries, the seconds, and the CPU seconds of the workers and of their database backends."""
    now = datetime.now(UTC)
    with database.transaction() as session:
        issue = Issue(
            edition_date=edition, subject="Bench", preheader="Bench", created_at=now, built_at=now
        )
        session.add(issue)
        session.flush()
        issue_id = issue.id
        session.execute(text("UPDATE issues SET status = 'sending' WHERE id = :i"), {"i": issue_id})
        queued = ledger.enqueue_issue(session, issue_id, now=now, not_before=now)
        ledger.refresh_statistics(session, added=queued)
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(workers + 1)
    go = context.Event()
    costs: Queue[tuple[float, float]] = context.Queue()
    processes = [
        context.Process(target=work, args=(url, issue_id, batch, flush, ready, go, costs))
        for _ in range(workers)
    ]
    for process in processes:
        process.start()
    stop = threading.Event()
    keeper = None
    if analyze:
        keeper = threading.Thread(target=keep_statistics, args=(url, stop, analyze), daemon=True)
        keeper.start()
    ready.wait()
    started = time.perf_counter()
    go.set()
    spent = [costs.get() for _ in processes]
    for process in processes:
        process.join()
    seconds = time.perf_counter() - started
    stop.set()
    if keeper is not None:
        keeper.join()
    if any(process.exitcode != 0 for process in processes):
        raise SystemExit("a worker process failed; see its traceback above")
    with database.engine.connect() as connection:
        sent = connection.execute(
            text("SELECT count(*) FROM deliveries WHERE issue_id = :i AND status = 'sent'"),
            {"i": issue_id},
        ).scalar_one()
        connection.execute(
            text("UPDATE issues SET status = 'sent', sent_at = now() WHERE id = :i"),
            {"i": issue_id},
        )
        connection.commit()
    if sent != queued:
        raise SystemExit(f"{sent:,} of {queued:,} deliveries marked sent")
    return queued, seconds, sum(own for own, _ in spent), sum(server for _, server in spent)


def fill_history(database: Database, *, rows: int, subscribers: int) -> float:
    """Earlier editions, every delivery sent: ``rows`` rows in one ``INSERT … SELECT``."""
    editions = -(-rows // subscribers)
    started = time.perf_counter()
    with database.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO issues (edition_date, status, subject, preheader, created_at, "
                "built_at, sent_at) SELECT DATE '2020-01-01' + e, 'sent', 'Earlier', 'Earlier', "
                "TIMESTAMPTZ '2020-01-01' + e * INTERVAL '1 day', "
                "TIMESTAMPTZ '2020-01-01' + e * INTERVAL '1 day', "
                "TIMESTAMPTZ '2020-01-01' + e * INTERVAL '1 day' "
                "FROM generate_series(0, :n - 1) AS e"
            ),
            {"n": editions},
        )
        # The count triggers aggregate a statement's transition table; for one statement of
        # millions of rows, switch them off and write the counts from the same figures.
        connection.execute(text("ALTER TABLE deliveries DISABLE TRIGGER USER"))
        connection.execute(
            text(
                "INSERT INTO deliveries (issue_id, subscriber_id, status, not_before, attempts, "
                "created_at, sent_at, message_id, variant_key) "
                "SELECT i.id, s, 'sent', i.sent_at, 1, i.sent_at, i.sent_at, "
                "'<' || i.id || '.' || s || '@bench.example>', 'html' "
                "FROM issues AS i CROSS JOIN generate_series(1, :s) AS s "
                "WHERE i.subject = 'Earlier' AND (i.id - (SELECT min(id) FROM issues "
                "WHERE subject = 'Earlier')) * :s + s <= :rows"
            ),
            {"s": subscribers, "rows": rows},
        )
        connection.execute(
            text(
                "INSERT INTO delivery_counts (issue_id, status, shard, count) "
                "SELECT issue_id, 'sent', 0, count(*) FROM deliveries "
                "WHERE issue_id IN (SELECT id FROM issues WHERE subject = 'Earlier') "
                "GROUP BY issue_id"
            )
        )
        connection.execute(text("ALTER TABLE deliveries ENABLE TRIGGER USER"))
    with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE deliveries"))
        connection.execute(text("CHECKPOINT"))
    return time.perf_counter() - started


def counts_agree(database: Database) -> bool:
    with database.engine.connect() as connection:
        kept = connection.execute(text("SELECT sum(count) FROM delivery_counts")).scalar_one()
        real = connection.execute(text("SELECT count(*) FROM deliveries")).scalar_one()
    return bool(kept == real)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--deliveries", type=int, default=100_000, help="rows per measured send")
    parser.add_argument("--history", type=int, default=10_000_000, help="rows of earlier editions")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--batch", type=int, default=200, help="rows per claim (the sender's)")
    parser.add_argument("--flush", type=int, default=50, help="outcomes per write (the sender's)")
    parser.add_argument(
        "--analyze-seconds",
        type=float,
        default=5.0,
        help="when the server's autovacuum is off: how often to apply its ANALYZE rule (0: never)",
    )
    parser.add_argument("--postgres-url", default=SERVER, help="the server; a database is made")
    args = parser.parse_args()

    name = f"newsletter_bench_ledger_{secrets.token_hex(4)}"
    admin = create_engine(args.postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
        found = {
            setting: connection.execute(text(f"SHOW {setting}")).scalar_one()
            for setting in (
                "server_version",
                "shared_buffers",
                "synchronous_commit",
                "fsync",
                "autovacuum",
            )
        }
    url = args.postgres_url.rsplit("/", 1)[0] + "/" + name
    print(
        f"{os.cpu_count()} CPU cores, shared by PostgreSQL, the workers and anything else "
        "running on this machine: more processes than cores measure contention, not the server."
    )
    print("PostgreSQL " + ", ".join(f"{key} {value}" for key, value in found.items()))
    print(
        f"each run: {args.deliveries:,} deliveries, claims of {args.batch}, "
        f"writes of {args.flush}, a transport that accepts at once"
    )
    analyze = args.analyze_seconds if found["autovacuum"] == "off" else None
    if analyze:
        print(
            "autovacuum is off on this server: the script applies its ANALYZE rule (50 rows + "
            f"10 % of the table changed) every {analyze:g} s, so that the planner sees what a "
            "production server's would"
        )
    rates: dict[tuple[str, int], float] = {}
    server_cost: dict[tuple[str, int], float] = {}
    try:
        database = Database.from_url(url)
        migrate.upgrade(database)
        with database.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO subscribers (email, email_key, status, format, created_at, "
                    "status_changed_at, link_key) SELECT 'reader' || n || '@example.com', "
                    "'reader' || n || '@example.com', 'confirmed', 'html', now(), now(), "
                    "md5(n::text) FROM generate_series(1, :n) AS n"
                ),
                {"n": args.deliveries},
            )
        edition = date(2030, 1, 1)
        phases = [("empty", 0)] + ([("history", args.history)] if args.history else [])
        for phase, history in phases:
            if history:
                seconds = fill_history(database, rows=history, subscribers=args.deliveries)
                print(f"\n{history:,} sent rows of earlier editions written in {seconds:.0f} s")
            for workers in args.workers:
                queued, seconds, own, server = run(
                    database,
                    url,
                    workers=workers,
                    edition=edition,
                    batch=args.batch,
                    flush=args.flush,
                    analyze=analyze,
                )
                edition += timedelta(days=1)
                rates[phase, workers] = queued / seconds
                server_cost[phase, workers] = server / queued
                base = rates[phase, args.workers[0]]
                print(
                    f"{phase:8} {workers} process{'es' if workers > 1 else '  '}: "
                    f"{queued / seconds:8,.0f} deliveries/s ({seconds:5.1f} s), "
                    f"{queued / seconds / base:4.2f} x {args.workers[0]}; CPU per delivery: "
                    f"workers {own / queued * 1e6:4.0f} us, PostgreSQL {server / queued * 1e6:4.0f} us"
                )
        if args.history:
            print(f"\nwith {args.history:,} earlier rows against an empty ledger:")
            for workers in args.workers:
                ratio = rates["history", workers] / rates["empty", workers]
                print(f"  {workers} process{'es' if workers > 1 else '  '}: {ratio:4.2f}")
        best = max(rates.values())
        print(
            f"\nbest: {best:,.0f} deliveries/s, {best * 3600:,.0f} an hour "
            f"(delivery counts consistent: {'yes' if counts_agree(database) else 'NO'})"
        )
        if any(server_cost.values()):
            worst = max(server_cost.values())
            print(
                f"PostgreSQL's CPU per delivery, at most {worst * 1e6:.0f} us: one core of a "
                f"database server of its own would carry about {1 / worst:,.0f} deliveries/s "
                "(CPU alone; commits also wait for the WAL to reach the disk)"
            )
        database.dispose()
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
