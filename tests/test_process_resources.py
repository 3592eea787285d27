"""Finding 6: the long-running process does not leak. Hours of scheduled fetches against a real
HTTP server (keep-alive, like real APIs) leave the open files, sockets and HTTP clients flat."""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from newsletter.bootstrap import App
from newsletter.scheduler import DailyPlan
from tests.conftest import EXAMPLES, FIXED_NOW

DATA = EXAMPLES / "data"


def open_files() -> tuple[int, int]:
    """(open file descriptors, of which sockets) of this process."""
    fds = os.listdir("/proc/self/fd")
    sockets = 0
    for fd in fds:
        try:
            sockets += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            continue  # the listing's own descriptor, closed meanwhile
    return len(fds), sockets


def settled_open_files(*, sockets_at_most: int, files_at_most: int) -> tuple[int, int]:
    """:func:`open_files` once the in-process server's handler threads have closed their ends.

    The recorded API runs in this process, so its side of a finished exchange is counted too
    until its handler thread closes it; a real leak grows by several sockets a tick and never
    settles.
    """
    counts = open_files()
    for _ in range(50):
        if counts[1] <= sockets_at_most and counts[0] <= files_at_most:
            break
        gc.collect()
        time.sleep(0.1)
        counts = open_files()
    return counts


def open_http_clients() -> int:
    gc.collect()
    return sum(
        1 for item in gc.get_objects() if isinstance(item, httpx.Client) and not item.is_closed
    )


class RecordedApi(BaseHTTPRequestHandler):
    """Serves the recorded examples over HTTP/1.1 with keep-alive, as real APIs and feeds do."""

    protocol_version = "HTTP/1.1"
    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        top = query.get("per_page") == ["100"] and "ids" not in query
        files = {
            "/api/coins/markets": DATA
            / "coingecko"
            / "coins"
            / ("markets_top100.json" if top else "markets.json"),
            "/api/global": DATA / "coingecko" / "global.json",
            "/fng": DATA / "fng.json",
            "/feeds/chainwire.xml": DATA / "feeds" / "chainwire.xml",
            "/feeds/ledgerdaily.atom": DATA / "feeds" / "ledgerdaily.atom",
            "/feeds/defidesk.rdf": DATA / "feeds" / "defidesk.rdf",
        }
        file = files.get(url.path)
        body = file.read_bytes() if file is not None else b"not found"
        self.requests.append(url.path)
        self.send_response(200 if file is not None else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def recorded_api() -> Iterator[str]:
    """The base URL of a real local HTTP server that keeps connections open between requests."""
    RecordedApi.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), RecordedApi)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("ticks", [20, pytest.param(200, marks=pytest.mark.slow)])
def test_finding6_scheduled_fetches_leave_no_open_files_sockets_or_clients(
    app_factory: Callable[..., App], sqlite_url: str, recorded_api: str, ticks: int
) -> None:
    def url(path: str) -> str:
        return recorded_api + path

    app = app_factory(
        database_url=sqlite_url,
        market={
            "base_url": url("/api"),
            "vs_currency": "usd",
            "top_coins": 100,
            "fear_greed_url": url("/fng"),
        },
        feeds=[
            {"name": "Chainwire", "url": url("/feeds/chainwire.xml")},
            {"name": "Ledger Daily", "url": url("/feeds/ledgerdaily.atom")},
            {"name": "DeFi Desk", "url": url("/feeds/defidesk.rdf")},
        ],
    )
    now = FIXED_NOW
    plan = DailyPlan(app, clock=lambda: now)

    def hour_passes() -> None:
        nonlocal now
        now += timedelta(hours=1)
        plan.tick(now)  # the minute job (builds an edition once a day, fetching first)
        plan.fetch(now, reason="test")  # the hourly fetch job

    for _ in range(5):  # warm up: pools, the database, the server's threads
        hour_passes()
    files, sockets = open_files()
    clients = open_http_clients()
    requests_before = len(RecordedApi.requests)
    for _ in range(ticks):
        hour_passes()
    assert len(RecordedApi.requests) - requests_before >= ticks * 6  # every fetch really went out
    after_files, after_sockets = settled_open_files(
        sockets_at_most=sockets + 2, files_at_most=files + 4
    )
    assert after_sockets <= sockets + 2, (sockets, after_sockets)
    assert after_files <= files + 4, (files, after_files)
    assert open_http_clients() <= clients


def test_a_fetch_closes_its_client_even_when_every_source_fails(
    app_factory: Callable[..., App], sqlite_url: str, tmp_path: Path
) -> None:

    app = app_factory(
        database_url=sqlite_url,
        market={"base_url": "http://127.0.0.1:9/api", "vs_currency": "usd", "top_coins": 0},
        feeds=[{"name": "Gone", "url": str(tmp_path / "missing.xml")}],
        fetch_retries=0,
    )
    before = open_http_clients()
    outcomes = app.sources.fetch(now=FIXED_NOW)
    assert [outcome.name for outcome in outcomes if not outcome.ok]
    assert open_http_clients() == before
