"""Workers killed mid-send, and two sends of one edition at once: PostgreSQL, real processes, real SMTP.

A worker can be killed at any moment (README, "Delivery"): these tests do exactly that, and count. Each kill
test fills PostgreSQL with thousands of confirmed subscribers, builds the demo edition, enqueues it
due now, and starts three ``newsletter worker --exit-when-idle`` processes that send through an
aiosmtpd server in this process, which records (recipient, Message-ID) of every message it accepts.
At a seeded moment one worker gets SIGKILL and a replacement starts; when every worker has exited
the test counts: everyone got the edition, duplicates stay within what one kill may cause and carry
the Message-ID of the first copy, and the ledger says ``sent`` everywhere.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select, text

from kernel import Base, utcnow
from newsletter.bootstrap import App
from newsletter.delivery import ledger
from newsletter.delivery.transports import SENT, Envelope, SendResult
from newsletter.editions import start_sending
from newsletter.models import Delivery, DeliveryStatus, Issue, IssueStatus
from subscribers.model import Subscriber, SubscriberStatus
from tests.conftest import FIXED_NOW, free_port

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

ROOT = Path(__file__).resolve().parent.parent
#: Relative to ROOT, the working directory of every subprocess (the demo's data paths are relative).
DEMO_CONFIG = Path("examples") / "demo.toml"
EDITION = date(2026, 11, 24)

KILL_SUBSCRIBERS = 5_000
WORKERS = 3
BATCH_SIZE = 100
POOL_SIZE = 4
LEASE_SECONDS = 10  # the smallest lease the settings allow: the dead worker's rows return soon
KILL_SEEDS = [11, 23, 37, 41, 59]
#: Messages ``Sender._parallel`` lets each pooled connection run ahead of the recording loop.
WINDOW_PER_CONNECTION = 2
TWO_SENDS_SUBSCRIBERS = 2_000
#: Failure guard only: a run that has not finished by then has hung.
DEADLINE_SECONDS = 180.0


# a recording SMTP server


_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]*>)", re.IGNORECASE | re.MULTILINE)


class Recorder:
    """aiosmtpd handler: accepts everything, records (recipient, Message-ID) of each message."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._copies: list[tuple[str, str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data: bytes = envelope.original_content
        match = _MESSAGE_ID.search(data.split(b"\r\n\r\n", 1)[0])
        message_id = match.group(1).decode("ascii", "replace") if match else ""
        with self._lock:
            self._copies.extend((recipient, message_id) for recipient in envelope.rcpt_tos)
        return "250 2.0.0 Ok: queued"

    def __len__(self) -> int:
        with self._lock:
            return len(self._copies)

    def copies(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._copies)


@dataclass
class RecordingServer:
    host: str
    port: int
    recorder: Recorder


@pytest.fixture
def recording_smtp() -> Iterator[RecordingServer]:
    recorder = Recorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port, decode_data=False)
    controller.start()
    try:
        yield RecordingServer("127.0.0.1", port, recorder)
    finally:
        controller.stop()


# PostgreSQL with an edition and many subscribers


@pytest.fixture
def pg_app(
    postgres_server_url: str, app_factory: Callable[..., App], recording_smtp: RecordingServer
) -> App:
    """An app on the (emptied) throwaway PostgreSQL database, sending to the recording server."""
    app = app_factory(
        database_url=postgres_server_url,
        transport="smtp",
        smtp_host=recording_smtp.host,
        smtp_port=recording_smtp.port,
        smtp_pool_size=POOL_SIZE,
        batch_size=BATCH_SIZE,
        lease_seconds=LEASE_SECONDS,
    )
    tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    with app.database.transaction() as session:
        session.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    return app


def add_confirmed(app: App, count: int) -> set[str]:
    """``count`` confirmed subscribers in one INSERT … SELECT (every tenth reads the text format)."""
    with app.database.transaction() as session:
        session.execute(
            text(
                "INSERT INTO subscribers (email, email_key, status, format, timezone, created_at, "
                "confirmed_at, status_changed_at, paused, link_key) "
                "SELECT 'reader' || n || '@example.com', 'reader' || n || '@example.com', "
                "'confirmed', CASE WHEN n % 10 = 0 THEN 'text' ELSE 'html' END, 'UTC', "
                "now(), now(), now(), false, md5(random()::text) "
                "FROM generate_series(1, :count) AS n"
            ),
            {"count": count},
        )
        emails = set(
            session.scalars(
                select(Subscriber.email).where(Subscriber.status == SubscriberStatus.CONFIRMED)
            )
        )
    assert len(emails) == count
    return emails


def build_edition(app: App) -> int:
    app.sources.fetch(now=FIXED_NOW)
    return app.editions.build(edition_date=EDITION, now=FIXED_NOW).issue_id


def enqueue_now(app: App, issue_id: int) -> int:
    """Start sending the edition and queue every confirmed subscriber, due now."""
    now = utcnow()
    with app.database.transaction() as session:
        start_sending(session.get_one(Issue, issue_id), now=now)
        return ledger.enqueue_issue(session, issue_id, now=now, not_before=now)


def ledger_state(app: App, issue_id: int) -> tuple[IssueStatus, dict[DeliveryStatus, int]]:
    with app.database.transaction(readonly=True) as session:
        return session.get_one(Issue, issue_id).status, ledger.counts(session, issue_id)


def ledger_message_ids(app: App, issue_id: int) -> dict[str, str | None]:
    with app.database.transaction(readonly=True) as session:
        rows = session.execute(
            select(Subscriber.email, Delivery.message_id)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(Delivery.issue_id == issue_id)
        ).all()
    return {row.email: row.message_id for row in rows}


# subprocesses


def subprocess_env(app: App, **extra: str) -> dict[str, str]:
    """The environment of a ``python -m newsletter`` child: the demo config on the test database."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("NEWSLETTER_")}
    settings = app.settings
    env.update(
        NEWSLETTER_CONFIG=str(DEMO_CONFIG),
        NEWSLETTER_DATABASE_URL=settings.database_url,
        NEWSLETTER_TRANSPORT="smtp",
        NEWSLETTER_SMTP_HOST=settings.smtp_host,
        NEWSLETTER_SMTP_PORT=str(settings.smtp_port),
        NEWSLETTER_SMTP_POOL_SIZE=str(settings.smtp_pool_size),
        NEWSLETTER_DEMO="true",
        NEWSLETTER_LEASE_SECONDS=str(settings.lease_seconds),
        NEWSLETTER_BATCH_SIZE=str(settings.batch_size),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class Processes:
    """Named ``python -m newsletter`` children, each logging to a file; all killed on close."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *arguments: str) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.log").open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "newsletter", *arguments],
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.running[name] = process
        return process

    def worker(self, name: str) -> subprocess.Popen[bytes]:
        return self.start(name, "worker", "--exit-when-idle", "--poll", "0.2")

    def log(self, name: str, tail: int = 2_000) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-tail:]

    def logs_of_all(self) -> str:
        return "\n".join(f"--- {name} ---\n{self.log(name)}" for name in self.running)

    def wait_all(self, deadline: float, what: str) -> dict[str, int]:
        """Every child's exit code; fails the test when one is still running at ``deadline``."""
        codes = {}
        for name, process in self.running.items():
            try:
                codes[name] = process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                pytest.fail(
                    f"{what}: {name} still running {DEADLINE_SECONDS:g} s after the start "
                    f"(a hang?)\n{self.logs_of_all()}"
                )
        return codes

    def close(self) -> None:
        for process in self.running.values():
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], Processes]]:
    made: list[Processes] = []

    def make(env: dict[str, str]) -> Processes:
        made.append(Processes(env, tmp_path))
        return made[-1]

    yield make
    for group in made:
        group.close()


# the kill test


def duplicate_bound(app: App) -> tuple[int, dict[str, int]]:
    """What one SIGKILL may re-send, from the Sender and the transport the workers build.

    A row is re-sent after a kill when the relay accepted its message but its ``sent`` mark was not
    committed: the lease runs out and another worker sends it again, with the same Message-ID. In
    ``Sender._send_batch`` such rows are

    - the results recorded in memory and not flushed yet: fewer than ``flush_size``, or exactly
      ``flush_size`` while that flush is being committed;
    - the messages handed to the pool and not yet taken by the recording loop, whether the relay
      has answered them or not: ``Sender._parallel`` keeps at most ``WINDOW_PER_CONNECTION`` (2)
      per pooled connection (``transport.concurrency``) ahead of what was recorded.

    Every batch is flushed before the next claim, so nothing else is exposed. One kill therefore
    re-sends at most ``flush_size + WINDOW_PER_CONNECTION * concurrency`` messages: 20 + 2 x 4 = 28
    here. (README, "Delivery": "at most one unflushed flush is sent twice"; the window is the
    in-flight part.)
    """
    transport = app.transport()
    sender = app.sender(transport)
    try:
        facts = {"flush_size": sender.flush_size, "pool": transport.concurrency}
    finally:
        sender.close()
        transport.close()
    assert facts["pool"] == POOL_SIZE
    return facts["flush_size"] + WINDOW_PER_CONNECTION * facts["pool"], facts


@pytest.mark.parametrize("seed", KILL_SEEDS)
def test_a_killed_worker_loses_no_one_and_resends_at_most_one_flush(
    seed: int,
    pg_app: App,
    recording_smtp: RecordingServer,
    processes: Callable[[dict[str, str]], Processes],
) -> None:
    app = pg_app
    rng = random.Random(seed)
    kill_after = rng.randint(300, 4_000)
    victim = f"worker{rng.randrange(WORKERS)}"
    everyone = add_confirmed(app, KILL_SUBSCRIBERS)
    issue_id = build_edition(app)
    assert enqueue_now(app, issue_id) == KILL_SUBSCRIBERS
    per_kill, facts = duplicate_bound(app)
    recorder = recording_smtp.recorder

    fleet = processes(subprocess_env(app))
    deadline = time.monotonic() + DEADLINE_SECONDS
    for number in range(WORKERS):
        fleet.worker(f"worker{number}")
    while len(recorder) < kill_after:
        if time.monotonic() > deadline:
            pytest.fail(
                f"seed {seed}: only {len(recorder)} of {kill_after} messages arrived before the "
                f"kill was due\n{fleet.logs_of_all()}"
            )
        if any(process.poll() is not None for process in fleet.running.values()):
            pytest.fail(
                f"seed {seed}: a worker exited after {len(recorder)} messages, before the kill "
                f"at {kill_after}\n{fleet.logs_of_all()}"
            )
        time.sleep(0.005)
    fleet.running[victim].send_signal(signal.SIGKILL)
    arrived_at_kill = len(recorder)
    fleet.worker("replacement")
    codes = fleet.wait_all(deadline, f"seed {seed}")

    assert codes.pop(victim) == -signal.SIGKILL
    assert codes == dict.fromkeys(codes, 0), fleet.logs_of_all()
    copies = recorder.copies()
    received = Counter(recipient for recipient, _ in copies)
    duplicates = len(copies) - len(received)
    print(
        f"seed {seed}: killed {victim} after {arrived_at_kill} messages (aimed at {kill_after}); "
        f"{len(copies)} received, {duplicates} duplicates; bound {per_kill} ({facts})"
    )
    assert set(received) == everyone, (
        f"seed {seed}: {len(everyone - set(received))} subscribers got nothing, "
        f"{len(set(received) - everyone)} strangers got mail"
    )
    assert duplicates <= per_kill, (
        f"seed {seed}: {duplicates} duplicates after one kill, more than a flush plus the pool's "
        f"window ({per_kill}, {facts}); most copies: {received.most_common(3)}"
    )
    ids: defaultdict[str, set[str]] = defaultdict(set)
    for recipient, message_id in copies:
        ids[recipient].add(message_id)
    mixed = {recipient: found for recipient, found in ids.items() if len(found) != 1}
    assert not mixed, f"seed {seed}: copies with different Message-IDs: {list(mixed.items())[:3]}"
    # The Message-ID each subscriber got is the one the ledger recorded.
    recorded = ledger_message_ids(app, issue_id)
    assert {recipient: found.pop() for recipient, found in ids.items()} == recorded
    status, counts = ledger_state(app, issue_id)
    assert counts[DeliveryStatus.SENT] == KILL_SUBSCRIBERS, counts
    assert status is IssueStatus.SENT


# the crash window of a pooled sender, in process


class AcceptingTransport:
    """Accepts every message at once and counts them."""

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self._accepted = 0
        self._lock = threading.Lock()

    @property
    def accepted(self) -> int:
        with self._lock:
            return self._accepted

    def send(self, envelope: Envelope, message: bytes) -> SendResult:
        with self._lock:
            self._accepted += 1
        return SENT

    def close(self) -> None:
        pass

    def settled(self) -> int:
        """The count once the pool threads have nothing more to send (failure guard: 5 s)."""
        last, steady, give_up = -1, 0, time.monotonic() + 5
        while steady < 20 and time.monotonic() < give_up:
            current = self.accepted
            steady = steady + 1 if current == last else 0
            last = current
            time.sleep(0.01)
        return last


def test_a_crash_window_is_at_most_one_flush_plus_the_pools_window(pg_app: App) -> None:
    """How many messages the relay holds and the ledger does not, when a kill would cost most.

    The recording loop is held each time its unflushed results reach ``flush_size`` (a slow
    commit, a GC pause or a descheduled process does the same) while the pool threads go on as
    far as the sender lets them; a SIGKILL then would re-send every message accepted and not yet
    committed as ``sent``. The pool must not run ahead of the flushes: a flush plus two messages
    per connection at most (see ``duplicate_bound``), not the rest of the claimed batch.
    """
    app = pg_app
    add_confirmed(app, BATCH_SIZE)
    issue_id = build_edition(app)
    enqueue_now(app, issue_id)
    transport = AcceptingTransport(POOL_SIZE)
    seen: list[int] = []
    exposure: list[int] = []

    def committed() -> int:
        with app.database.transaction(readonly=True) as session:
            count = session.scalar(
                select(func.count())
                .select_from(Delivery)
                .where(Delivery.issue_id == issue_id, Delivery.status == DeliveryStatus.SENT)
            )
        return count or 0

    def hold_before_each_flush(recorded: ledger.Recorded) -> None:
        seen.append(recorded.delivery_id)
        if len(seen) % sender.flush_size == 0:
            exposure.append(transport.settled() - committed())

    sender = app.sender(transport, on_result=hold_before_each_flush)
    try:
        with app.database.transaction(readonly=True) as session:
            issue = session.get_one(Issue, issue_id)
        report = sender.deliver(issue)
    finally:
        sender.close()
    assert report.sent == BATCH_SIZE and report.finished
    assert len(exposure) == BATCH_SIZE // sender.flush_size
    bound = sender.flush_size + WINDOW_PER_CONNECTION * transport.concurrency
    print(f"accepted and not marked sent, before each flush: {exposure} (bound {bound})")
    assert max(exposure) <= bound, (
        f"accepted by the relay and not marked sent, before each flush: {exposure}; a kill then "
        f"re-sends them all (bound {bound}: flush_size {sender.flush_size}, "
        f"pool {transport.concurrency})"
    )


# two sends of the same date at once


def test_two_sends_of_one_date_at_once_send_each_subscriber_once(
    pg_app: App,
    recording_smtp: RecordingServer,
    processes: Callable[[dict[str, str]], Processes],
) -> None:
    app = pg_app
    everyone = add_confirmed(app, TWO_SENDS_SUBSCRIBERS)
    issue_id = build_edition(app)
    fleet = processes(subprocess_env(app))
    deadline = time.monotonic() + DEADLINE_SECONDS
    for name in ("send-a", "send-b"):
        fleet.start(name, "send", "--date", EDITION.isoformat())
    codes = fleet.wait_all(deadline, "two sends")

    assert codes == {"send-a": 0, "send-b": 0}, fleet.logs_of_all()
    copies = recording_smtp.recorder.copies()
    received = Counter(recipient for recipient, _ in copies)
    assert set(received) == everyone
    assert len(copies) == TWO_SENDS_SUBSCRIBERS, f"duplicates: {received.most_common(3)}"
    status, counts = ledger_state(app, issue_id)
    assert counts[DeliveryStatus.SENT] == TWO_SENDS_SUBSCRIBERS, counts
    assert status is IssueStatus.SENT
    with app.database.transaction(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(Issue)) == 1
