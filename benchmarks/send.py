"""End-to-end sending against Postfix's smtp-sink: throughput, enqueue time and worker memory.

Usage (from the repository root; needs PostgreSQL and, the first time, root for apt-get)::

    uv run --locked python benchmarks/send.py [--subscribers 100000] [--workers 2] [--pool 4]
        [--dkim rsa] [--dkim ed25519] [--py-spy] [--skip-million] [--million 1000000]
        [--million-seconds 20] [--postgres-url URL]

``--py-spy`` needs py-spy beside the interpreter: ``uv run --locked --with py-spy python ...``.

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
(c) the wire ceiling: the same processes x connections and the same message, prebuilt and
    dot-stuffed once, over raw sockets: ``MAIL``, ``RCPT`` and ``DATA`` in one write (PIPELINING),
    then the bytes; no database, no per-message work but the RCPT line; clock as in (a);
(b) with ``--dkim rsa`` / ``--dkim ed25519``: (b) again on a queue of its own, the workers signing
    with a key generated in the scratch folder (``NEWSLETTER_DKIM_*``);
and unless ``--skip-million``: ``--million`` subscribers enqueued (timed), the same workers sending
for ``--million-seconds`` and then stopped with SIGTERM.

It prints messages per second of (a), (b) and (c), the ratios b/a and b/c (end to end, and
steady: start-up excluded), DKIM on / off, the enqueue times, and the peak RSS (VmHWM, polled from
/proc while each worker runs) of every worker with the small and the large queue. For each (b) it
also prints the time from the last ``sent`` mark to the last worker's exit, and the CPU (user +
system, start-up included) the workers spent per 1,000 messages: on a shared machine, the figure
that compares between runs. With ``--py-spy`` it prints where each worker of (b) spent the samples
in which it held the GIL (start-up imports left out).

Each (b) starts with one worker run that has nothing to send, so that the workers start as on a
deployed host, with their modules' bytecode compiled; when the calling environment sets
``PYTHONDONTWRITEBYTECODE``, that bytecode goes to a cache in the scratch folder.
Targets: b/c >= 0.8, b/a >= 1.3, DKIM on / off >= 0.7; worker peak RSS within 10 % between the two
queue sizes; 1M enqueue < 30 s.
"""

from __future__ import annotations

import argparse
import base64
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
#: py-spy's options: sample without pausing the worker, only the thread holding the GIL (where
#: the worker spends CPU in Python, not where its threads wait for replies), write collapsed stacks.
SPY = ("record", "--nonblocking", "--gil", "--rate", "250", "--format", "raw")
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


# (c) the wire ceiling


def _replies(reader: Any, count: int) -> None:
    """Read ``count`` SMTP replies (multi-line ones whole); anything but 2xx/3xx is an error."""
    for _ in range(count):
        while True:
            line = reader.readline()
            if not line:
                raise ConnectionError("smtp-sink closed the connection")
            if line[:1] not in (b"2", b"3"):
                raise ConnectionError(f"smtp-sink refused: {line!r}")
            if line[3:4] != b"-":
                break


def wire_client(
    port: int,
    message_path: str,
    connections: int,
    first: int,
    count: int,
    ready: Any,
) -> None:
    """One process: ``connections`` threads, each one raw socket sending the prebuilt bytes.

    Per message: ``MAIL``, ``RCPT`` and ``DATA`` in one write (PIPELINING), their three replies,
    then the message (already dot-stuffed and terminated) and its reply. No parsing beyond the
    reply lines, no database, nothing built per message but the RCPT line.
    """
    payload = Path(message_path).read_bytes()
    if not payload.endswith(b"\r\n"):
        payload += b"\r\n"
    payload = re.sub(rb"(?m)^\.", b"..", payload) + b".\r\n"
    mail = f"MAIL FROM:<{SENDER}>\r\n".encode()
    sockets = []
    for _ in range(connections):
        sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        reader = sock.makefile("rb")
        _replies(reader, 1)  # greeting
        sock.sendall(b"EHLO bench.example\r\n")
        _replies(reader, 1)
        sockets.append((sock, reader))

    def run(index: int) -> None:
        sock, reader = sockets[index]
        for number in range(first + index, first + count, connections):
            sock.sendall(mail + b"RCPT TO:<reader%d@example.com>\r\nDATA\r\n" % number)
            _replies(reader, 3)
            sock.sendall(payload)
            _replies(reader, 1)
        sock.sendall(b"QUIT\r\n")
        _replies(reader, 1)
        reader.close()
        sock.close()

    ready.wait()
    threads = [threading.Thread(target=run, args=(index,)) for index in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def client_processes(
    target: Any, sink: Sink, message: bytes, total: int, workers: int, pool: int
) -> float:
    """Seconds for ``total`` messages over workers x pool connections of ``target``'s kind."""
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
            target=target, args=(sink.port, handle.name, pool, first, count, ready)
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
        raise SystemExit(f"a {target.__name__} failed: {[p.exitcode for p in processes]}")
    return elapsed


# (b): worker processes


def vm_hwm_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU of a process (all its threads) so far; also readable while it is a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def exited(pid: int) -> bool:
    """Whether the child has exited, without reaping it (its /proc entry stays readable)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def py_spy() -> list[str]:
    """The py-spy command: beside this interpreter (``uv run --with py-spy``) or on the PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        sys.exit("--py-spy needs py-spy: run with 'uv run --locked --with py-spy python ...'")
    return [found]


def profile_top(path: Path, lines: int) -> str:
    """The functions where a py-spy raw profile spent its samples: self and inclusive shares."""
    own: dict[str, int] = {}
    startup = 0
    inside: dict[str, int] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
        if any(frame.startswith("_find_and_load ") for frame in frames):
            startup += count
            continue  # start-up imports: not the send
        total += count
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            inside[frame] = inside.get(frame, 0) + count
    if not total:
        return f"{path.name}: no samples"
    out = [f"{path.name}: {total} samples ({startup} more in start-up imports); self %, incl %"]
    for frame, count in sorted(own.items(), key=lambda entry: -entry[1])[:lines]:
        out.append(f"  self {count / total * 100:5.1f}%  {frame}")
    for frame, count in sorted(inside.items(), key=lambda entry: -entry[1])[:lines]:
        out.append(f"  incl {count / total * 100:5.1f}%  {frame}")
    return "\n".join(out)


@dataclass
class WorkerRun:
    started_at: datetime
    elapsed: float
    codes: list[int | None]
    peak_kib: list[int] = field(default_factory=list)
    #: CPU seconds (user + system) of each worker, start-up included.
    cpu: list[float] = field(default_factory=list)
    #: When the last worker exited.
    ended_at: datetime | None = None


def bytecode_cache(scratch: Path) -> str | None:
    """Give the workers a bytecode cache when the calling environment forbids writing one.

    With ``PYTHONDONTWRITEBYTECODE`` set and no ``__pycache__`` in the tree, every worker would
    compile its ~900 modules from source at each start (about 1.5 s of CPU here), which a deployed
    worker never does: Python writes the cache on the first run, or the installer compiles it.
    The workers then write and read it in the scratch folder (``PYTHONPYCACHEPREFIX``); nothing is
    written into the tree. Returns what is printed about it.
    """
    if not os.environ.get("PYTHONDONTWRITEBYTECODE") or os.environ.get("PYTHONPYCACHEPREFIX"):
        return None
    del os.environ["PYTHONDONTWRITEBYTECODE"]
    os.environ["PYTHONPYCACHEPREFIX"] = str(scratch / "pycache")
    return "PYTHONDONTWRITEBYTECODE was set: the workers' bytecode cache is in the scratch folder"


def warm_up(env: dict[str, str]) -> None:
    """Start a worker once with these settings but nothing to send (an edition date that is not
    queued), so that what it imports is compiled before the timed runs, as on a deployed host."""
    subprocess.run(
        [sys.executable, "-m", "newsletter", "worker", "--exit-when-idle", "--date", "2000-01-01"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        check=True,
    )


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
    env: dict[str, str],
    count: int,
    logs: Path,
    *,
    stop_after: float | None = None,
    profile: bool = False,
) -> WorkerRun:
    """Start ``count`` workers; wait for them (or SIGTERM them after ``stop_after`` seconds)."""
    started_at = utcnow()
    started = time.perf_counter()
    processes = []
    for number in range(count):
        with (logs / f"worker{number}.log").open("wb") as log:
            command = [sys.executable, "-m", "newsletter", "worker", "--exit-when-idle"]
            command += ["--poll", POLL]
            processes.append(
                subprocess.Popen(
                    command,
                    cwd=ROOT,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    spies = [
        subprocess.Popen(
            [*py_spy(), *SPY, "--pid", str(process.pid), "-o", str(logs / f"worker{number}.spy")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for number, process in enumerate(processes)
        if profile
    ]
    peaks = [0] * count
    cpu = [0.0] * count
    stopped = False
    try:
        while any(process.returncode is None for process in processes):
            for index, process in enumerate(processes):
                hwm = vm_hwm_kib(process.pid) if process.returncode is None else None
                if hwm is not None:
                    peaks[index] = max(peaks[index], hwm)
                if process.returncode is None and exited(process.pid):
                    cpu[index] = cpu_seconds(process.pid) or cpu[index]
                    process.poll()  # reaped only now that its CPU time is read
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
            time.sleep(0.02)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    elapsed = time.perf_counter() - started
    ended_at = utcnow()
    for spy in spies:
        spy.wait(timeout=60)  # it writes its profile when the worker exits
    codes = [process.returncode for process in processes]
    run = WorkerRun(started_at, elapsed, codes, peaks, cpu, ended_at)
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


def dkim_env(algorithm: str, scratch: Path) -> dict[str, str]:
    """Settings (docs/settings.md) that sign with a key generated here, in the scratch folder."""
    if algorithm == "rsa":
        key = scratch / "dkim-rsa.pem"
        subprocess.run(
            ["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True
        )
        name = "rsa-sha256"
    else:
        from nacl.signing import SigningKey

        key = scratch / "dkim-ed25519.key"
        key.write_bytes(base64.b64encode(bytes(SigningKey.generate())))
        name = "ed25519-sha256"
    return {
        "NEWSLETTER_DKIM_PRIVATE_KEY_FILE": str(key),
        "NEWSLETTER_DKIM_ALGORITHM": name,
        "NEWSLETTER_DKIM_SELECTOR": "bench",
        "NEWSLETTER_DKIM_DOMAIN": "example.com",
    }


@dataclass
class Queue:
    """A throwaway database holding one edition enqueued for ``size`` subscribers."""

    url: str
    app: App
    issue_id: int
    inserted: float
    enqueued: float


def fill_queue(
    stack: contextlib.ExitStack, server_url: str, sink: Sink, pool: int, size: int, day: date
) -> Queue:
    url = stack.enter_context(scratch_database(server_url))
    app = make_app(url, sink, pool)
    stack.callback(app.close)
    issue_id = build_edition(app, day)
    inserted = insert_subscribers(app, 1, size)
    added, enqueued = enqueue_now(app, issue_id)
    assert added == size, added
    return Queue(url, app, issue_id, inserted, enqueued)


def end_to_end(
    queue: Queue,
    sink: Sink,
    args: argparse.Namespace,
    logs: Path,
    results: Results,
    label: str,
    extra_env: dict[str, str] | None = None,
) -> tuple[float, float, WorkerRun]:
    """Send the queue with the workers; check every message arrived once; msg/s from the start
    to the last exit, and steady (between the first and the last sent mark)."""
    n = args.subscribers
    before = sink.messages()
    env = worker_env(queue.url, sink, args.pool) | (extra_env or {})
    warm_up(env)
    logs.mkdir()
    run = run_workers(env, args.workers, logs, profile=args.py_spy)
    status, counts = ledger_counts(queue.app, queue.issue_id)
    assert counts[DeliveryStatus.SENT] == n and status is IssueStatus.SENT, (status, counts)
    assert sink.messages() - before == n, (before, sink.messages())
    rate = n / run.elapsed
    results.add(f"{label} end to end (start to exit)", f"{rate:,.0f} msg/s")
    marks = sent_marks(queue.app, queue.issue_id)
    steady = rate
    if marks:
        first, last = marks
        results.add(
            f"{label} first sent mark after start",
            f"{(first - run.started_at).total_seconds():.2f} s",
        )
        steady = n / (last - first).total_seconds()
        results.add(f"{label} steady (first to last sent mark)", f"{steady:,.0f} msg/s")
        if run.ended_at is not None:
            results.add(
                f"{label} last sent mark to last exit",
                f"{(run.ended_at - last).total_seconds():.2f} s",
            )
    if run.cpu and all(run.cpu):
        results.add(
            f"{label} worker CPU per 1,000 messages (user+sys, all workers)",
            f"{sum(run.cpu) / n * 1000:.3f} s",
        )
    if args.py_spy:
        for number in range(args.workers):
            print(profile_top(logs / f"worker{number}.spy", 12), flush=True)
    return rate, steady, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pool", type=int, default=4, help="SMTP connections per worker")
    parser.add_argument(
        "--dkim",
        choices=["rsa", "ed25519"],
        action="append",
        default=[],
        help="also run (b) with DKIM signing by a generated key (repeatable)",
    )
    parser.add_argument(
        "--py-spy",
        action="store_true",
        help="profile the workers of (b) with py-spy and print the top functions",
    )
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
        bytecode = bytecode_cache(scratch)
        if bytecode:
            print(bytecode, flush=True)

        # (b)'s setup, whose edition also gives (a) and (c) their message
        n = args.subscribers
        queue = fill_queue(stack, args.postgres_url, sink, args.pool, n, EDITION)
        message = personalised_sample(queue.app, queue.issue_id)
        print(f"\n{n:,} subscribers; message {len(message) / 1024:.1f} KiB", flush=True)
        results.add(f"insert {n:,} subscribers", f"{queue.inserted:.2f} s")
        results.add(f"enqueue {n:,}", f"{queue.enqueued:.2f} s")
        signed = {
            algorithm: fill_queue(stack, args.postgres_url, sink, args.pool, n, EDITION)
            for algorithm in args.dkim
        }

        shape = f"{args.workers} processes x {args.pool} connections"
        print(f"\n(a) raw smtplib: {shape}", flush=True)
        before = sink.messages()
        raw_seconds = client_processes(raw_client, sink, message, n, args.workers, args.pool)
        assert sink.messages() - before == n, (before, sink.messages())
        raw_rate = n / raw_seconds
        results.add("(a) raw smtplib ceiling", f"{raw_rate:,.0f} msg/s")

        print(f"\n(c) wire ceiling, prebuilt bytes over pipelined raw SMTP: {shape}", flush=True)
        before = sink.messages()
        wire_seconds = client_processes(wire_client, sink, message, n, args.workers, args.pool)
        assert sink.messages() - before == n, (before, sink.messages())
        wire_rate = n / wire_seconds
        results.add("(c) wire ceiling", f"{wire_rate:,.0f} msg/s")

        print(f"\n(b) {args.workers} workers x pool {args.pool}, {n:,} queued", flush=True)
        ours, steady, run = end_to_end(queue, sink, args, scratch / "b", results, "(b)")
        results.add("ratio b/a", f"{ours / raw_rate:.2f}", "target >= 1.3")
        results.add("ratio b/c", f"{ours / wire_rate:.2f}", "target >= 0.8")
        results.add("ratio b/a, steady", f"{steady / raw_rate:.2f}")
        results.add("ratio b/c, steady", f"{steady / wire_rate:.2f}")
        for number, peak in enumerate(run.peak_kib):
            results.add(f"worker{number} peak RSS, {n:,} queued", f"{mib(peak)} MiB")

        for algorithm, signed_queue in signed.items():
            label = f"(b) DKIM {algorithm}"
            print(f"\n{label}: {args.workers} workers x pool {args.pool}, {n:,} queued", flush=True)
            env = dkim_env(algorithm, scratch)
            rate, signed_steady, _ = end_to_end(
                signed_queue, sink, args, scratch / f"dkim-{algorithm}", results, label, env
            )
            results.add(f"ratio DKIM {algorithm} on / off", f"{rate / ours:.2f}", "target >= 0.7")
            results.add(f"ratio DKIM {algorithm} on / off, steady", f"{signed_steady / steady:.2f}")

        if not args.skip_million:
            million = args.million
            print(f"\n{million:,} queued, workers stopped after {args.million_seconds:g} s")
            big = fill_queue(
                stack, args.postgres_url, sink, args.pool, million, EDITION + timedelta(days=1)
            )
            results.add(f"insert {million:,} subscribers", f"{big.inserted:.2f} s")
            results.add(f"enqueue {million:,}", f"{big.enqueued:.2f} s", "target < 30 s")
            logs = scratch / "million"
            logs.mkdir()
            big_run = run_workers(
                worker_env(big.url, sink, args.pool),
                args.workers,
                logs,
                stop_after=args.million_seconds,
            )
            _, counts = ledger_counts(big.app, big.issue_id)
            results.add(
                f"sent from the {million:,} queue",
                f"{counts[DeliveryStatus.SENT]:,} in {big_run.elapsed:.0f} s",
            )
            assert counts[DeliveryStatus.SENDING] == 0, counts  # SIGTERM handed back the claims
            for number, peak in enumerate(big_run.peak_kib):
                results.add(f"worker{number} peak RSS, {million:,} queued", f"{mib(peak)} MiB")
            small, large = max(run.peak_kib), max(big_run.peak_kib)
            results.add(
                f"peak RSS change, {million:,} vs {n:,} queued",
                f"{(large - small) / small * 100:+.1f} %",
                "target within 10 %",
            )
    stop_postfix_daemon()
    print(results.table())


if __name__ == "__main__":
    main()
