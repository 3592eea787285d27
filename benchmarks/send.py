"""End-to-end sending against Postfix's smtp-sink: throughput, enqueue time and worker memory.

Usage (from the repository root; needs PostgreSQL and, the first time, root for apt-get)::

    uv run --locked python benchmarks/send.py [--subscribers 100000] [--workers 2] [--pool 4]
        [--skip-million] [--million 1000000] [--million-seconds 20] [--postgres-url URL]

``--postgres-url`` (default ``$NEWSLETTER_TEST_POSTGRES_URL`` or
``postgresql+psycopg://postgres@127.0.0.1:5432/test``) only names the server: every phase runs in a
throwaway database created, migrated and dropped by this script. ``NEWSLETTER_*`` variables of the
calling environment are ignored, so that runs compare.

The SMTP peer is Postfix's ``smtp-sink`` on loopback (``smtp-sink -c -u postfix 127.0.0.1:PORT
1000``: it accepts everything, offers PIPELINING, and counts). When it is not installed the script
installs the ``postfix`` package non-interactively (debconf preseeded to "No configuration") and
makes sure the Postfix daemon itself is not left running.

In one run it measures:

(a) the raw ceiling: ``--workers`` processes x ``--pool`` threads, one ``smtplib.SMTP`` connection
    each, sending one personalised message of the edition (the bytes the workers send) with plain
    ``sendmail`` in a loop, as many messages in all as there are subscribers; its clock starts
    once every connection is open;
(b) our end-to-end send: ``--subscribers`` confirmed subscribers (one ``INSERT … SELECT
    generate_series``), the demo edition fetched and built, enqueued (one ``INSERT … SELECT``, timed),
    then ``--workers`` processes of ``python -m newsletter worker --exit-when-idle --poll 0.5`` with
    an SMTP pool of ``--pool`` connections each, timed from their start to the last exit (also
    shown: the first ``sent`` mark after the start, i.e. start-up, and the steady rate between the
    first and the last ``sent`` mark);
(c) unless ``--skip-million``: ``--million`` subscribers enqueued (timed), the same workers sending
    for ``--million-seconds`` and then stopped with SIGTERM.

It prints messages per second of (a) and (b), the ratio b/a, the enqueue times, and the peak RSS
(VmHWM, polled from /proc while each worker runs) of every worker with the 100k and the 1M queue.
Targets: b/a >= 0.8; worker peak RSS within 10 % between the two queue sizes; 1M enqueue < 30 s.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, func, make_url, select, text  # noqa: E402

from kernel import utcnow  # noqa: E402
from newsletter.bootstrap import App, bootstrap  # noqa: E402
from newsletter.config import load_settings  # noqa: E402
from newsletter.db import Database  # noqa: E402
from newsletter.delivery import ledger  # noqa: E402
from newsletter.delivery.transports import SENT, Envelope, SendResult  # noqa: E402
from newsletter.editions import start_sending  # noqa: E402
from newsletter.migrate import upgrade  # noqa: E402
from newsletter.models import Delivery, DeliveryStatus, Issue, IssueStatus  # noqa: E402
from subscribers.model import MailFormat  # noqa: E402

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEMO_CONFIG = Path("examples") / "demo.toml"  # relative to ROOT, the working directory
EDITION = date(2026, 11, 24)
BUILT_AT = datetime(2026, 11, 24, 6, 30, tzinfo=UTC)  # when the demo data was recorded
SENDER = "digest@example.com"
#: A worker with nothing left to claim looks again this often (the default, 5 s, would add up to 5 s
#: of idling at the end of a run while the other workers finish their last batches).
POLL = "0.5"
POSTFIX_PRESEED = b"postfix postfix/main_mailer_type select No configuration\n"


# smtp-sink


def _sbin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidate = Path("/usr/sbin") / name
    return str(candidate) if candidate.exists() else None


def ensure_smtp_sink() -> str:
    """The path of smtp-sink, installing Postfix (unconfigured, daemon stopped) if needed."""
    path = _sbin("smtp-sink")
    if path is None:
        if os.geteuid() != 0:
            sys.exit(
                "smtp-sink is missing; install Postfix (apt-get install postfix) or run as root"
            )
        print("smtp-sink not found: installing postfix (debconf: No configuration) ...", flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["debconf-set-selections"], input=POSTFIX_PRESEED, check=True)
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "postfix"],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        path = _sbin("smtp-sink")
        if path is None:
            sys.exit("postfix is installed but smtp-sink is still missing")
    stop_postfix_daemon()
    return path


def stop_postfix_daemon() -> None:
    """The package may start Postfix's master; the benchmark wants no MTA of its own running."""
    postfix = _sbin("postfix")
    if postfix is None:
        return
    running = subprocess.run([postfix, "status"], capture_output=True, check=False)
    if running.returncode == 0:
        print("stopping the Postfix daemon the package started", flush=True)
        subprocess.run([postfix, "stop"], capture_output=True, check=False)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Sink:
    """smtp-sink on loopback; its -c counters (``... mesg=N``) go to a file we read."""

    def __init__(self, binary: str, scratch: Path) -> None:
        self.port = free_port()
        self.log = scratch / "smtp-sink.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [binary, "-c", "-u", "postfix", f"127.0.0.1:{self.port}", "1000"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 10
        while True:
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=5) as probe:
                    probe.ehlo()
                    if not probe.has_extn("pipelining"):
                        raise SystemExit("smtp-sink does not offer PIPELINING")
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"smtp-sink did not start: {self.log.read_text()}") from None
                time.sleep(0.05)

    def messages(self) -> int:
        found = re.findall(rb"mesg=(\d+)", self.log.read_bytes())
        return int(found[-1]) if found else 0

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# PostgreSQL


@contextlib.contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    """A migrated throwaway database on the server; dropped at the end."""
    base = make_url(server_url)
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    name = f"newsletter_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = base.set(database=name).render_as_string(hide_password=False)
    try:
        database = Database.from_url(url)
        upgrade(database)
        database.dispose()
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def make_app(url: str, sink: Sink, pool: int) -> App:
    return bootstrap(
        load_settings(
            ROOT / DEMO_CONFIG,
            database_url=url,
            transport="smtp",
            smtp_host="127.0.0.1",
            smtp_port=sink.port,
            smtp_pool_size=pool,
        )
    )


def build_edition(app: App, edition_date: date) -> int:
    app.sources.fetch(now=BUILT_AT)
    return app.editions.build(edition_date=edition_date, now=BUILT_AT).issue_id


def insert_subscribers(app: App, first: int, last: int) -> float:
    """Confirmed subscribers readerFIRST … readerLAST in one INSERT … SELECT; seconds taken."""
    started = time.perf_counter()
    with app.database.transaction() as session:
        session.execute(
            text(
                "INSERT INTO subscribers (email, email_key, status, format, timezone, created_at, "
                "confirmed_at, status_changed_at, paused, link_key) "
                "SELECT 'reader' || n || '@example.com', 'reader' || n || '@example.com', "
                "'confirmed', 'html', 'UTC', now(), now(), now(), false, md5(random()::text) "
                "FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS n"
            ),
            {"first": first, "last": last},
        )
    return time.perf_counter() - started


def enqueue_now(app: App, issue_id: int) -> tuple[int, float]:
    """Start sending and queue everyone due now (one INSERT … SELECT); rows and seconds taken."""
    started = time.perf_counter()
    now = utcnow()
    with app.database.transaction() as session:
        start_sending(session.get_one(Issue, issue_id), now=now)
        added = ledger.enqueue_issue(session, issue_id, now=now, not_before=now)
    return added, time.perf_counter() - started


def ledger_counts(app: App, issue_id: int) -> tuple[IssueStatus, dict[DeliveryStatus, int]]:
    with app.database.transaction(readonly=True) as session:
        return session.get_one(Issue, issue_id).status, ledger.counts(session, issue_id)


def sent_marks(app: App, issue_id: int) -> tuple[datetime, datetime] | None:
    """The first and the last ``sent`` mark of an edition (each written at a flush)."""
    with app.database.transaction(readonly=True) as session:
        first, last = session.execute(
            select(func.min(Delivery.sent_at), func.max(Delivery.sent_at)).where(
                Delivery.issue_id == issue_id
            )
        ).one()
    return (first, last) if first and last else None


# one personalised message, as the workers send it


class Capture:
    concurrency = 1

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    def send(self, envelope: Envelope, message: bytes) -> SendResult:
        self.messages.append(message)
        return SENT

    def close(self) -> None:
        pass


def personalised_sample(app: App, issue_id: int) -> bytes:
    """The bytes a worker sends to reader1 (the Sender's own per-message step, captured)."""
    with app.database.transaction(readonly=True) as session:
        issue = session.get_one(Issue, issue_id)
    capture = Capture()
    sender = app.sender(capture)
    now = utcnow()
    item = ledger.Claimed(
        delivery_id=0,
        subscriber_id=1,
        email="reader1@example.com",
        format=MailFormat.HTML,
        attempts=1,
        queued_at=now,
    )
    sender._send_one(issue, item, format_datetime(now))
    sender.close()
    return capture.messages[0]


# (a) the raw smtplib ceiling


def raw_client(
    port: int,
    message_path: str,
    connections: int,
    first: int,
    count: int,
    ready: Any,
) -> None:
    """One process: ``connections`` threads, each one connection sending with plain sendmail."""
    message = Path(message_path).read_bytes()
    smtps = []
    for _ in range(connections):
        smtp = smtplib.SMTP("127.0.0.1", port, timeout=60)
        smtp.ehlo()
        smtps.append(smtp)

    def run(index: int) -> None:
        smtp = smtps[index]
        for number in range(first + index, first + count, connections):
            smtp.sendmail(SENDER, [f"reader{number}@example.com"], message)
        smtp.quit()

    ready.wait()
    threads = [threading.Thread(target=run, args=(index,)) for index in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def raw_ceiling(sink: Sink, message: bytes, total: int, workers: int, pool: int) -> float:
    """Seconds for ``total`` messages over workers x pool plain smtplib connections."""
    with tempfile.NamedTemporaryFile(suffix=".eml", delete=False) as handle:
        handle.write(message)
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(workers + 1)
    share, extra = divmod(total, workers)
    processes = []
    first = 1
    for number in range(workers):
        count = share + (1 if number < extra else 0)
        process = context.Process(
            target=raw_client, args=(sink.port, handle.name, pool, first, count, ready)
        )
        process.start()
        processes.append(process)
        first += count
    try:
        ready.wait(timeout=120)  # every connection is open: the clock starts now
        started = time.perf_counter()
        for process in processes:
            process.join()
        elapsed = time.perf_counter() - started
    finally:
        os.unlink(handle.name)
    if any(process.exitcode != 0 for process in processes):
        raise SystemExit(f"a raw smtplib client failed: {[p.exitcode for p in processes]}")
    return elapsed


# (b) and (c): worker processes


def vm_hwm_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


@dataclass
class WorkerRun:
    started_at: datetime
    elapsed: float
    codes: list[int | None]
    peak_kib: list[int] = field(default_factory=list)


def worker_env(url: str, sink: Sink, pool: int) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("NEWSLETTER_")}
    env.update(
        NEWSLETTER_CONFIG=str(DEMO_CONFIG),
        NEWSLETTER_DATABASE_URL=url,
        NEWSLETTER_TRANSPORT="smtp",
        NEWSLETTER_SMTP_HOST="127.0.0.1",
        NEWSLETTER_SMTP_PORT=str(sink.port),
        NEWSLETTER_SMTP_POOL_SIZE=str(pool),
        NEWSLETTER_DEMO="true",
    )
    return env


def run_workers(
    env: dict[str, str], count: int, logs: Path, *, stop_after: float | None = None
) -> WorkerRun:
    """Start ``count`` workers; wait for them (or SIGTERM them after ``stop_after`` seconds)."""
    started_at = utcnow()
    started = time.perf_counter()
    processes = []
    for number in range(count):
        with (logs / f"worker{number}.log").open("wb") as log:
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "newsletter",
                        "worker",
                        "--exit-when-idle",
                        "--poll",
                        POLL,
                    ],
                    cwd=ROOT,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    peaks = [0] * count
    stopped = False
    try:
        while any(process.poll() is None for process in processes):
            for index, process in enumerate(processes):
                hwm = vm_hwm_kib(process.pid) if process.poll() is None else None
                if hwm is not None:
                    peaks[index] = max(peaks[index], hwm)
            if (
                not stopped
                and stop_after is not None
                and time.perf_counter() - started >= stop_after
            ):
                for process in processes:
                    process.send_signal(signal.SIGTERM)
                stopped = True
            if time.perf_counter() - started > 3600:
                raise SystemExit("the workers ran for an hour; giving up")
            time.sleep(0.05)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    elapsed = time.perf_counter() - started
    run = WorkerRun(started_at, elapsed, [process.returncode for process in processes], peaks)
    if any(code != 0 for code in run.codes):
        tails = "\n".join(
            f"--- worker{number} ---\n{(logs / f'worker{number}.log').read_text()[-2000:]}"
            for number in range(count)
        )
        raise SystemExit(f"a worker failed: exit codes {run.codes}\n{tails}")
    return run


# the run


@dataclass
class Results:
    rows: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, what: str, value: str, target: str = "") -> None:
        self.rows.append((what, value, target))
        print(f"  {what}: {value}" + (f"  [{target}]" if target else ""), flush=True)

    def table(self) -> str:
        width = max(len(row[0]) for row in self.rows)
        value_width = max(len(row[1]) for row in self.rows)
        lines = ["", "summary", "-" * (width + value_width + 16)]
        for what, value, target in self.rows:
            lines.append(f"{what:<{width}}  {value:>{value_width}}  {target}".rstrip())
        return "\n".join(lines)


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pool", type=int, default=4, help="SMTP connections per worker")
    parser.add_argument("--skip-million", action="store_true")
    parser.add_argument("--million", type=int, default=1_000_000, help="the large queue's size")
    parser.add_argument(
        "--million-seconds", type=float, default=20.0, help="how long the large queue is sent"
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("NEWSLETTER_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL),
    )
    args = parser.parse_args()
    os.chdir(ROOT)
    for name in [name for name in os.environ if name.startswith("NEWSLETTER_")]:
        del os.environ[name]

    results = Results()
    binary = ensure_smtp_sink()
    with contextlib.ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-send-")))
        sink = Sink(binary, scratch)
        stack.callback(sink.stop)
        print(f"smtp-sink on 127.0.0.1:{sink.port} (PIPELINING offered)", flush=True)

        # (b)'s setup, whose edition also gives (a) its message
        url = stack.enter_context(scratch_database(args.postgres_url))
        app = make_app(url, sink, args.pool)
        stack.callback(app.close)
        issue_id = build_edition(app, EDITION)
        inserted = insert_subscribers(app, 1, args.subscribers)
        message = personalised_sample(app, issue_id)
        added, enqueue_seconds = enqueue_now(app, issue_id)
        assert added == args.subscribers, added
        n = args.subscribers
        print(f"\n{n:,} subscribers; message {len(message) / 1024:.1f} KiB", flush=True)
        results.add(f"insert {n:,} subscribers", f"{inserted:.2f} s")
        results.add(f"enqueue {n:,}", f"{enqueue_seconds:.2f} s")

        print(f"\n(a) raw smtplib: {args.workers} processes x {args.pool} connections", flush=True)
        before = sink.messages()
        raw_seconds = raw_ceiling(sink, message, n, args.workers, args.pool)
        assert sink.messages() - before == n, (before, sink.messages())
        raw_rate = n / raw_seconds
        results.add("(a) raw smtplib ceiling", f"{raw_rate:,.0f} msg/s")

        print(f"\n(b) {args.workers} workers x pool {args.pool}, {n:,} queued", flush=True)
        before = sink.messages()
        env = worker_env(url, sink, args.pool)
        logs = scratch / "b"
        logs.mkdir()
        run = run_workers(env, args.workers, logs)
        status, counts = ledger_counts(app, issue_id)
        assert counts[DeliveryStatus.SENT] == n and status is IssueStatus.SENT, (status, counts)
        assert sink.messages() - before == n, (before, sink.messages())
        ours = n / run.elapsed
        results.add("(b) end to end (start to exit)", f"{ours:,.0f} msg/s")
        marks = sent_marks(app, issue_id)
        if marks:
            first, last = marks
            results.add(
                "(b) first sent mark after start",
                f"{(first - run.started_at).total_seconds():.2f} s",
            )
            span = (last - first).total_seconds()
            results.add("(b) steady (first to last sent mark)", f"{n / span:,.0f} msg/s")
        results.add("ratio b/a", f"{ours / raw_rate:.2f}", "target >= 0.8")
        for number, peak in enumerate(run.peak_kib):
            results.add(f"worker{number} peak RSS, {n:,} queued", f"{mib(peak)} MiB")

        if not args.skip_million:
            million = args.million
            print(f"\n(c) {million:,} queued, workers stopped after {args.million_seconds:g} s")
            big = stack.enter_context(scratch_database(args.postgres_url))
            big_app = make_app(big, sink, args.pool)
            stack.callback(big_app.close)
            big_issue = build_edition(big_app, EDITION + timedelta(days=1))
            inserted = insert_subscribers(big_app, 1, million)
            added, enqueue_seconds = enqueue_now(big_app, big_issue)
            assert added == million, added
            results.add(f"insert {million:,} subscribers", f"{inserted:.2f} s")
            results.add(f"enqueue {million:,}", f"{enqueue_seconds:.2f} s", "target < 30 s")
            logs = scratch / "c"
            logs.mkdir()
            big_run = run_workers(
                worker_env(big, sink, args.pool),
                args.workers,
                logs,
                stop_after=args.million_seconds,
            )
            _, counts = ledger_counts(big_app, big_issue)
            results.add(
                f"sent from the {million:,} queue",
                f"{counts[DeliveryStatus.SENT]:,} in {big_run.elapsed:.0f} s",
            )
            assert counts[DeliveryStatus.SENDING] == 0, counts  # SIGTERM handed back the claims
            for number, peak in enumerate(big_run.peak_kib):
                results.add(f"worker{number} peak RSS, {million:,} queued", f"{mib(peak)} MiB")
            small, large = max(run.peak_kib), max(big_run.peak_kib)
            results.add(
                "peak RSS change, 1M vs 100k queue",
                f"{(large - small) / small * 100:+.1f} %",
                "target within 10 %",
            )
    stop_postfix_daemon()
    print(results.table())


if __name__ == "__main__":
    main()
