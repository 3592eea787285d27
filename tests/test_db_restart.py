"""PostgreSQL restarted while two workers send: nothing lost, nothing sent twice.

The test starts a PostgreSQL cluster of its own (``initdb`` and ``pg_ctl`` from the server package,
in a temporary folder, on a free port), so that restarting it disturbs nobody else. Two
``newsletter worker --exit-when-idle`` processes send an edition to 5,000 subscribers through an
aiosmtpd server that records (recipient, Message-ID) of every message it accepts; when a third of
them has arrived the cluster is restarted (``pg_ctl restart -m fast``: every connection is cut). The
workers keep the outcomes they could not write, wait for the database, and write them: every
subscriber gets the edition exactly once and the ledger says ``sent`` everywhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import create_engine, text

from newsletter.bootstrap import App
from newsletter.db import Database
from newsletter.migrate import upgrade
from newsletter.models import DeliveryStatus, IssueStatus
from tests.conftest import free_port
from tests.test_kill import (
    DEADLINE_SECONDS,
    POOL_SIZE,
    Processes,
    RecordingServer,
    add_confirmed,
    build_edition,
    enqueue_now,
    ledger_message_ids,
    ledger_state,
    subprocess_env,
)
from tests.test_kill import Recorder as SmtpRecorder

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

SUBSCRIBERS = 5_000
WORKERS = 2
BATCH_SIZE = 100
#: Longer than the restart takes, so that no lease runs out while its worker waits for the database.
LEASE_SECONDS = 60


def _server_binaries() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if found:
        return found[-1].parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


class Cluster:
    """A PostgreSQL cluster in a folder of its own, on loopback, trusting local connections."""

    def __init__(self, binaries: Path, folder: Path) -> None:
        self.binaries = binaries
        self.folder = folder
        self.data = folder / "data"
        self.port = free_port()
        # PostgreSQL refuses to run as root: run it as the postgres account then.
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(folder, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.options = (
            f"-p {self.port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c full_page_writes=off"
        )

    def _run(self, tool: str, *arguments: str) -> None:
        command = [*self.as_user, str(self.binaries / tool), *arguments]
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed: {done.stdout}\n{done.stderr}")

    def _pg_ctl(self, action: str, *arguments: str) -> None:
        log = str(self.folder / "server.log")
        self._run(
            "pg_ctl", action, "-D", str(self.data), "-l", log, "-w", "-o", self.options, *arguments
        )

    def start(self) -> None:
        self._pg_ctl("start")

    def restart(self) -> None:
        self._pg_ctl("restart", "-m", "fast")

    def stop(self) -> None:
        self._pg_ctl("stop", "-m", "immediate")

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"


@pytest.fixture
def own_cluster() -> Iterator[Cluster]:
    binaries = _server_binaries()
    if binaries is None or not (binaries / "initdb").exists():
        pytest.skip("the PostgreSQL server programs (initdb, pg_ctl) are not installed")
    folder = Path(tempfile.mkdtemp(prefix="newsletter-pg-"))
    try:
        cluster = Cluster(binaries, folder)
        cluster.start()
        try:
            admin = create_engine(cluster.url("postgres"), isolation_level="AUTOCOMMIT")
            with admin.connect() as connection:
                connection.execute(text('CREATE DATABASE "newsletter"'))
            admin.dispose()
            database = Database.from_url(cluster.url("newsletter"))
            upgrade(database)
            database.dispose()
            yield cluster
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def recording_smtp() -> Iterator[RecordingServer]:
    recorder = SmtpRecorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port, decode_data=False)
    controller.start()
    try:
        yield RecordingServer("127.0.0.1", port, recorder)
    finally:
        controller.stop()


def test_a_database_restart_mid_send_loses_none_and_sends_none_twice(
    own_cluster: Cluster,
    app_factory: Callable[..., App],
    recording_smtp: RecordingServer,
    tmp_path: Path,
) -> None:
    app = app_factory(
        database_url=own_cluster.url("newsletter"),
        transport="smtp",
        smtp_host=recording_smtp.host,
        smtp_port=recording_smtp.port,
        smtp_pool_size=POOL_SIZE,
        batch_size=BATCH_SIZE,
        lease_seconds=LEASE_SECONDS,
    )
    emails = add_confirmed(app, SUBSCRIBERS)
    issue_id = build_edition(app)
    assert enqueue_now(app, issue_id) == SUBSCRIBERS
    app.database.dispose()

    workers = Processes(subprocess_env(app), tmp_path)
    try:
        for number in range(WORKERS):
            workers.worker(f"worker{number}")
        deadline = time.monotonic() + DEADLINE_SECONDS
        while len(recording_smtp.recorder) < SUBSCRIBERS // 3:
            assert time.monotonic() < deadline, f"no progress\n{workers.logs_of_all()}"
            assert all(process.poll() is None for process in workers.running.values()), (
                f"a worker ended before the restart\n{workers.logs_of_all()}"
            )
            time.sleep(0.01)
        own_cluster.restart()
        arrived_at_restart = len(recording_smtp.recorder)
        codes = workers.wait_all(deadline, "after the restart")
    finally:
        workers.close()
    assert all(code == 0 for code in codes.values()), f"{codes}\n{workers.logs_of_all()}"
    assert arrived_at_restart < SUBSCRIBERS, "the send ended before the restart"

    copies = recording_smtp.recorder.copies()
    received = Counter(recipient for recipient, _ in copies)
    duplicates = len(copies) - len(received)
    print(f"{len(copies)} received, {duplicates} duplicates, restart at {arrived_at_restart}")
    assert set(received) == emails, f"lost: {len(emails - set(received))}"
    assert duplicates == 0, f"sent twice: {[r for r, n in received.items() if n > 1][:10]}"
    status, counts = ledger_state(app, issue_id)
    assert counts[DeliveryStatus.SENT] == SUBSCRIBERS, counts
    assert status is IssueStatus.SENT
    marked = ledger_message_ids(app, issue_id)
    assert dict(copies) == marked
