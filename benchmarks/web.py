"""Web throughput and tail latency: subscribe and one-click unsubscribe, beside a /healthz baseline.

For each database (SQLite file, PostgreSQL), the script migrates a fresh database, adds confirmed
subscribers for the unsubscribe run, starts ``uvicorn`` with the real app in a separate process on
loopback (folder transport: every subscribe and unsubscribe writes its mail, with fsync, as in
production), and drives it from another separate process with a bounded load: a fixed number of
concurrent connections, each sending its next request when the previous one answered, for a fixed
time. It reports requests per second, p50 and p99 latency and errors per scenario:

* ``healthz``: GET /healthz (one ``SELECT 1``): the floor of the stack, measured in the same run;
* ``home``: GET / (the subscribe page: the latest edition's date, a CSRF token and cookie);
* ``subscribe``: POST /subscribe with a CSRF token, a new address each time (rate limits counted
  in the database, signup, consent record, confirmation mail);
* ``unsubscribe``: the RFC 8058 one-click POST to a signed List-Unsubscribe URL, no cookie, a
  different confirmed subscriber each time (goodbye mail).

Every subscription mail is written to the outbox in the request's transaction and delivered by the
server process itself (its outbox thread), as ``newsletter web`` does: the mails' cost is in the
figures. After each database the script prints subscribe and one-click as a fraction of healthz's
rate in the same run (target: at least 0.5) and whether their p99 is under 100 ms. Each row also
gives the CPU time (user + system) of the server process and of the load process per request
answered (``srv CPU``, ``load CPU``, in ms; the server's read from /proc around each scenario, the
load process's own from its first request to its last, start-up left out):
the figure that does not move with the machine's other load, and what the ratio comes from.

Usage (from the project root)::

    uv run --locked python benchmarks/web.py                    # 20 s per scenario, both databases
    uv run --locked python benchmarks/web.py --seconds 5 --databases sqlite --concurrency 8

PostgreSQL comes from ``NEWSLETTER_TEST_POSTGRES_URL`` (default: the local test server); a throwaway
database is created and dropped. The rate limits are raised for the run (one client IP sends
everything); everything else is the production code path.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECRET = "benchmark-" + "k" * 40
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SCENARIOS = ("healthz", "home", "subscribe", "unsubscribe")
RATIO_TARGET = 0.5
P99_TARGET_MS = 100.0
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def settings_for(database_url: str, outbox: Path, port: int) -> Any:
    from newsletter.config import load_settings

    return load_settings(
        None,
        database_url=database_url,
        transport="folder",
        outbox_dir=outbox,
        secret_key=SECRET,
        base_url=f"http://127.0.0.1:{port}",
        postal_address="Benchmark, 1 Loop Road",
        subscribe_ip_limit=10_000_000,
        subscribe_address_limit=1_000,
        confirmations_per_day=100,
    )


# the server process


def serve(args: argparse.Namespace) -> None:
    import uvicorn

    from newsletter.bootstrap import bootstrap
    from newsletter.web import create_app
    from newsletter.web.command import uvicorn_options

    app = bootstrap(settings_for(args.database_url, Path(args.outbox), args.port))
    # the options of `newsletter web` (no access log at the default verbosity)
    uvicorn.run(create_app(app), **uvicorn_options(host="127.0.0.1", port=args.port))


# the load process


@dataclass
class Result:
    database: str
    scenario: str
    concurrency: int
    seconds: float
    requests: int
    errors: int
    rps: float
    p50_ms: float
    p99_ms: float
    #: Requests answered in all, warm-up included (the CPU figures are per one of these).
    answered: int = 0
    #: CPU time (user + system) of the server process per request, in ms.
    server_cpu_ms: float = float("nan")
    #: CPU time of the load process per request, in ms (it shares the machine with the server).
    load_cpu_ms: float = float("nan")


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


async def drive(args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    from subscribers.tokens import UNSUBSCRIBE, TokenSigner

    signer = TokenSigner(SECRET)
    base = args.base
    latencies: list[float] = []
    errors = 0
    answered = 0
    next_id = args.first_id
    measuring_from = time.perf_counter() + args.warmup
    stop_at = measuring_from + args.seconds
    run = uuid.uuid4().hex[:8]

    async def user(number: int) -> None:
        nonlocal errors, next_id, answered
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
            token = ""
            if args.scenario == "subscribe":
                page = await client.get("/")
                match = CSRF.search(page.text)
                assert match, "no CSRF token on the subscribe page"
                token = match.group(1)
            sequence = 0
            while True:
                started = time.perf_counter()
                if started >= stop_at:
                    return
                sequence += 1
                try:
                    if args.scenario == "healthz":
                        response = await client.get("/healthz")
                        ok = response.status_code == 200
                    elif args.scenario == "home":
                        response = await client.get("/")
                        ok = response.status_code == 200
                    elif args.scenario == "subscribe":
                        response = await client.post(
                            "/subscribe",
                            data={
                                "email": f"bench-{run}-{number}-{sequence}@example.com",
                                "csrf_token": token,
                            },
                        )
                        ok = response.status_code == 303
                    else:
                        subscriber_id = next_id
                        next_id += 1
                        if subscriber_id > args.last_id:
                            return
                        response = await client.post(
                            f"/unsubscribe/{signer.sign(subscriber_id, UNSUBSCRIBE)}",
                            data={"List-Unsubscribe": "One-Click"},
                        )
                        ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                ended = time.perf_counter()
                answered += 1
                if started >= measuring_from:
                    latencies.append(ended - started)
                    if not ok:
                        errors += 1

    cpu_from = time.process_time()
    await asyncio.gather(*(user(number) for number in range(args.concurrency)))
    load_cpu = time.process_time() - cpu_from
    count = len(latencies)
    return asdict(
        Result(
            database=args.database,
            scenario=args.scenario,
            concurrency=args.concurrency,
            seconds=args.seconds,
            requests=count,
            errors=errors,
            rps=count / args.seconds,
            p50_ms=statistics.median(latencies) * 1000 if latencies else float("nan"),
            p99_ms=percentile(latencies, 0.99) * 1000,
            answered=answered,
            load_cpu_ms=load_cpu * 1000 / answered if answered else float("nan"),
        )
    )


def load(args: argparse.Namespace) -> None:
    print(json.dumps(asyncio.run(drive(args))))


# the conductor


def prepare(database_url: str, subscribers: int) -> tuple[int, int]:
    """Migrate, then add confirmed subscribers for the unsubscribe run; return their id range."""
    from sqlalchemy import func, insert, select

    from kernel import utcnow
    from newsletter import migrate
    from newsletter.db import Database
    from subscribers.model import Subscriber, SubscriberStatus

    database = Database.from_url(database_url)
    migrate.upgrade(database)
    now = utcnow()
    with database.transaction() as session:
        start = (session.scalar(select(func.max(Subscriber.id))) or 0) + 1
        for offset in range(0, subscribers, 5_000):
            session.execute(
                insert(Subscriber),
                [
                    {
                        "email": f"leaver{n}@example.com",
                        "email_key": f"leaver{n}@example.com",
                        "status": SubscriberStatus.CONFIRMED,
                        "created_at": now,
                        "status_changed_at": now,
                        "confirmed_at": now,
                        "consent_at": now,
                        "consent_source": "benchmark",
                        # The driver signs links with the id alone, as mails sent before link keys.
                        "legacy_links": True,
                    }
                    for n in range(offset, min(offset + 5_000, subscribers))
                ],
            )
        last = session.scalar(select(func.max(Subscriber.id))) or 0
    database.dispose()
    return start, last


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_ready(base: str, process: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("the server process exited; see its output above")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit("the server did not answer /healthz in time")


def run_database(
    name: str, url: str, args: argparse.Namespace, scratch: Path
) -> list[dict[str, Any]]:
    outbox = scratch / f"outbox-{name}"
    first, last = prepare(url, args.subscribers)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    me = [sys.executable, str(Path(__file__).resolve())]
    server = subprocess.Popen(
        [*me, "serve", "--database-url", url, "--port", str(port), "--outbox", str(outbox)],
        cwd=ROOT,
    )
    results = []
    try:
        wait_ready(base, server)
        for scenario in args.scenarios:
            command = [
                *me,
                "load",
                "--base", base,
                "--database", name,
                "--scenario", scenario,
                "--seconds", str(args.seconds),
                "--warmup", str(args.warmup),
                "--concurrency", str(args.concurrency),
                "--first-id", str(first),
                "--last-id", str(last),
            ]  # fmt: skip
            server_before = process_cpu_seconds(server.pid)
            done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"the load process failed:\n{done.stderr}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            if result["answered"]:
                server_cpu = process_cpu_seconds(server.pid) - server_before
                result["server_cpu_ms"] = server_cpu * 1000 / result["answered"]
            results.append(result)
            print(_row(result), flush=True)
        print(_verdict(name, results), flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return results


def postgres_database(base_url: str) -> tuple[str, Any]:
    from sqlalchemy import create_engine, make_url, text

    base = make_url(base_url)
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    name = f"newsletter_bench_{secrets.token_hex(5)}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return base.set(database=name).render_as_string(hide_password=False), drop


HEADER = (
    f"{'database':<11}{'scenario':<13}{'conc.':>6}{'requests':>10}{'req/s':>9}"
    f"{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'srv CPU':>10}{'load CPU':>9}"
)


def _row(result: dict[str, Any]) -> str:
    return (
        f"{result['database']:<11}{result['scenario']:<13}{result['concurrency']:>6}"
        f"{result['requests']:>10}{result['rps']:>9.0f}{result['p50_ms']:>9.1f}"
        f"{result['p99_ms']:>9.1f}{result['errors']:>8}"
        f"{result['server_cpu_ms']:>10.2f}{result['load_cpu_ms']:>9.2f}"
    )


def _verdict(database: str, results: list[dict[str, Any]]) -> str:
    """Subscribe and one-click against healthz of the same run: the ratios and the targets."""
    by_scenario = {result["scenario"]: result for result in results}
    healthz = by_scenario.get("healthz")
    lines = []
    for scenario in ("subscribe", "unsubscribe"):
        result = by_scenario.get(scenario)
        if result is None or healthz is None or not healthz["rps"]:
            continue
        ratio = result["rps"] / healthz["rps"]
        held = ratio >= RATIO_TARGET and result["p99_ms"] < P99_TARGET_MS and not result["errors"]
        lines.append(
            f"{database:<11}{scenario:<13}{ratio:5.2f} x healthz (target >= {RATIO_TARGET}), "
            f"p99 {result['p99_ms']:.1f} ms (target < {P99_TARGET_MS:g}): "
            f"{'held' if held else 'NOT held'}; server CPU a request "
            f"{result['server_cpu_ms'] / healthz['server_cpu_ms']:.1f} x healthz's"
        )
    return "\n".join(lines)


def conduct(args: argparse.Namespace) -> None:
    print(
        f"{args.seconds:g} s per scenario after {args.warmup:g} s warm-up, {args.concurrency} "
        f"concurrent connections, 1 uvicorn worker, loopback; Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs",
        flush=True,
    )
    print(HEADER, flush=True)
    scratch = Path(tempfile.mkdtemp(prefix="newsletter-bench-web-"))
    results: list[dict[str, Any]] = []
    try:
        for name in args.databases:
            if name == "sqlite":
                results += run_database("sqlite", f"sqlite:///{scratch}/bench.db", args, scratch)
            else:
                url, drop = postgres_database(args.postgres_url)
                try:
                    results += run_database("postgresql", url, args, scratch)
                finally:
                    drop()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command")
    server = commands.add_parser("serve", help="(internal) run the server")
    server.add_argument("--database-url", required=True)
    server.add_argument("--port", type=int, required=True)
    server.add_argument("--outbox", required=True)
    loader = commands.add_parser("load", help="(internal) run one scenario's load")
    loader.add_argument("--base", required=True)
    loader.add_argument("--database", required=True)
    loader.add_argument("--scenario", choices=SCENARIOS, required=True)
    loader.add_argument("--seconds", type=float, required=True)
    loader.add_argument("--warmup", type=float, required=True)
    loader.add_argument("--concurrency", type=int, required=True)
    loader.add_argument("--first-id", type=int, required=True)
    loader.add_argument("--last-id", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=20.0, help="measured time per scenario")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured time first")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent connections")
    parser.add_argument(
        "--databases",
        type=lambda value: value.split(","),
        default=["sqlite", "postgresql"],
        help="comma-separated: sqlite,postgresql",
    )
    parser.add_argument(
        "--scenarios",
        type=lambda value: value.split(","),
        default=list(SCENARIOS),
        help="comma-separated: " + ",".join(SCENARIOS),
    )
    parser.add_argument(
        "--subscribers", type=int, default=100_000, help="confirmed subscribers to unsubscribe"
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("NEWSLETTER_TEST_POSTGRES_URL", DEFAULT_POSTGRES),
        help="PostgreSQL server (a throwaway database is created there)",
    )
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    if args.command == "serve":
        serve(args)
    elif args.command == "load":
        load(args)
    else:
        conduct(args)


if __name__ == "__main__":
    main()
