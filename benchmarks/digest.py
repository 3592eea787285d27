"""Digest benchmark: fetch, store, select, render and inline an edition from a local HTTP server.

A loopback server serves 10 RSS feeds of 50 items each and the recorded market data. The script
times each stage of building an edition and, in the same run, the cost of one personalised
message, then prints the ratio of render + inline to one personalised message (how many messages
one render is worth). Run with ``make bench`` or ``uv run python benchmarks/digest.py``.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import sample_values  # noqa: E402

from newsletter.config import load_settings  # noqa: E402
from newsletter.db import Database  # noqa: E402
from newsletter.delivery.message import MessageHeaders, prepare_message  # noqa: E402
from newsletter.editions import compose_digest, edition_context  # noqa: E402
from newsletter.ingest import store_items, store_quotes  # noqa: E402
from newsletter.migrate import upgrade  # noqa: E402
from newsletter.render import Renderer  # noqa: E402
from newsletter.resources import templates_dir  # noqa: E402
from newsletter.sources.feeds import parse_feed  # noqa: E402
from newsletter.sources.fetch import Fetcher  # noqa: E402
from newsletter.sources.market import parse_markets  # noqa: E402

FEEDS = 10
ITEMS = 50
NOW = datetime(2026, 11, 24, 6, 30, tzinfo=UTC)
MARKETS = (ROOT / "examples" / "data" / "coingecko" / "coins" / "markets.json").read_bytes()


def feed(number: int) -> bytes:
    items = []
    for item in range(ITEMS):
        published = format_datetime(NOW - timedelta(minutes=7 * item + number))
        items.append(
            f"<item><title>Feed {number} story {item}: bitcoin, ether and the week's flows</title>"
            f"<link>https://feed{number}.example.com/2026/11/{item}?utm_source=rss</link>"
            f"<guid>feed{number}-{item}</guid><pubDate>{published}</pubDate>"
            f"<description>&lt;p&gt;Spot volumes, funding rates and ETF flows, item {item}. "
            f"{'More context on the market. ' * 8}&lt;/p&gt;</description></item>"
        )
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>Feed {number}</title>'
        f"<link>https://feed{number}.example.com/</link>{''.join(items)}</channel></rss>"
    ).encode()


BODIES = {f"/feed{number}.xml": feed(number) for number in range(FEEDS)} | {
    "/coins/markets": MARKETS
}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = BODIES.get(self.path.split("?")[0])
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return None


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    with tempfile.TemporaryDirectory() as scratch:
        settings = load_settings(
            ROOT / "examples" / "demo.toml",
            database_url=f"sqlite:///{scratch}/bench.db",
            article_count=8,
            max_article_age_hours=0,
        )
        database = Database.from_url(settings.database_url)
        upgrade(database)
        fetcher = Fetcher(timeout=10, max_bytes=5_000_000)
        urls = [f"{base}/feed{number}.xml" for number in range(FEEDS)]

        def fetch_all() -> list[bytes]:
            with ThreadPoolExecutor(max_workers=settings.fetch_concurrency) as pool:
                bodies = list(pool.map(fetcher.read, urls))
            bodies.append(fetcher.read(f"{base}/coins/markets"))
            return bodies

        fetch_time, bodies = timed(fetch_all)

        def store() -> int:
            stored = 0
            with database.transaction() as session:
                for number, body in enumerate(bodies[:-1]):
                    items = parse_feed(body, source=f"Feed {number}", now=NOW)
                    stored += store_items(session, items, first_seen_at=NOW)
                store_quotes(
                    session,
                    parse_markets(bodies[-1], source=base),
                    vs_currency="usd",
                    fetched_at=NOW,
                )
            return stored

        store_time, stored = timed(store)

        def select() -> Any:
            with database.transaction(readonly=True) as session:
                digest, _ = compose_digest(
                    session, settings, edition_date=date(2026, 11, 24), now=NOW
                )
            return digest

        select_time, digest = timed(select)
        renderer = Renderer([templates_dir()])
        context = edition_context(settings)
        renderer.render_edition(digest, context=context)  # warm the template cache
        render_times = []
        for _ in range(5):
            seconds, rendered = timed(lambda: renderer.render_edition(digest, context=context))
            render_times.append(seconds)
        render_time = statistics.median(render_times)

        prepared = prepare_message(
            MessageHeaders(
                sender=settings.sender,
                subject=rendered.subject,
                list_id=settings.list_id_value,
                list_name=settings.newsletter_name,
                unsubscribe_mailto=settings.unsubscribe_address,
            ),
            html_body=rendered.html,
            text_body=rendered.text,
        )

        inputs = [sample_values(number) for number in range(2000)]
        rounds = []
        for _ in range(5):
            seconds, _ = timed(lambda: [prepared.personalise(value) for value in inputs])
            rounds.append(seconds / len(inputs))
        message_time = statistics.median(rounds)
        fetcher.close()
        database.dispose()
    server.shutdown()

    print(f"{FEEDS} feeds x {ITEMS} items over loopback HTTP, {stored} stories stored")
    print(f"fetch (concurrent)   : {fetch_time * 1000:8.1f} ms")
    print(f"parse + store        : {store_time * 1000:8.1f} ms")
    print(f"select + market      : {select_time * 1000:8.1f} ms")
    print(
        f"render + inline      : {render_time * 1000:8.1f} ms  ({len(rendered.html.encode()) / 1024:.1f} KiB HTML)"
    )
    print(f"one personalised msg : {message_time * 1e6:8.1f} µs")
    print(f"render+inline / personalised message: {render_time / message_time:,.0f}x")


if __name__ == "__main__":
    main()
