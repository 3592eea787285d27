"""HTTP behaviour of the fetcher against a real local server: retries, Retry-After, conditional GET."""

from __future__ import annotations

import gzip
import socket
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from newsletter.errors import SourceError
from newsletter.sources.fetch import Fetcher, Validators


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def fetcher(waits: list[float]) -> Iterator[Fetcher]:
    with Fetcher(timeout=2.0, max_bytes=100_000, retries=2, backoff=0.5, sleep=waits.append) as f:
        yield f


def test_a_503_then_a_200_is_retried_with_backoff(
    httpserver: HTTPServer, fetcher: Fetcher, waits: list[float]
) -> None:
    httpserver.expect_ordered_request("/feed").respond_with_data("busy", status=503)
    httpserver.expect_ordered_request("/feed").respond_with_data("busy", status=502)
    httpserver.expect_ordered_request("/feed").respond_with_data("<rss/>")
    fetched = fetcher.fetch(httpserver.url_for("/feed"))
    assert fetched.body == b"<rss/>"
    assert fetched.attempts == 3
    assert waits == [0.5, 1.0]


def test_retry_after_is_honoured(
    httpserver: HTTPServer, fetcher: Fetcher, waits: list[float]
) -> None:
    httpserver.expect_ordered_request("/markets").respond_with_data(
        "slow down", status=429, headers={"Retry-After": "7"}
    )
    httpserver.expect_ordered_request("/markets").respond_with_data("[]")
    assert fetcher.read(httpserver.url_for("/markets")) == b"[]"
    assert waits == [7.0]


def test_a_long_retry_after_fails_now_instead_of_waiting(
    httpserver: HTTPServer, fetcher: Fetcher, waits: list[float]
) -> None:
    httpserver.expect_request("/markets").respond_with_data(
        "quota", status=429, headers={"Retry-After": "3600"}
    )
    with pytest.raises(SourceError, match="retry after 3600 s"):
        fetcher.read(httpserver.url_for("/markets"))
    assert waits == []


def test_retries_run_out(httpserver: HTTPServer, fetcher: Fetcher, waits: list[float]) -> None:
    httpserver.expect_request("/feed").respond_with_data("down", status=500)
    with pytest.raises(SourceError, match="answered HTTP 500 after 3 attempts"):
        fetcher.read(httpserver.url_for("/feed"))
    assert len(waits) == 2


def test_a_404_is_not_retried(httpserver: HTTPServer, fetcher: Fetcher, waits: list[float]) -> None:
    httpserver.expect_request("/feed").respond_with_data("gone", status=404)
    with pytest.raises(SourceError, match="answered HTTP 404"):
        fetcher.read(httpserver.url_for("/feed"))
    assert waits == []


def test_conditional_get_with_etag_and_last_modified(
    httpserver: HTTPServer, fetcher: Fetcher
) -> None:
    seen: list[dict[str, str]] = []

    def handler(request: Request) -> Response:
        seen.append(dict(request.headers))
        if request.headers.get("If-None-Match") == '"v1"':
            return Response(status=304, headers={"ETag": '"v1"'})
        return Response(
            "<rss/>", headers={"ETag": '"v1"', "Last-Modified": "Tue, 24 Nov 2026 06:00:00 GMT"}
        )

    httpserver.expect_request("/feed").respond_with_handler(handler)
    first = fetcher.fetch(httpserver.url_for("/feed"))
    assert first.validators == Validators('"v1"', "Tue, 24 Nov 2026 06:00:00 GMT")
    assert not first.not_modified
    second = fetcher.fetch(httpserver.url_for("/feed"), validators=first.validators)
    assert second.not_modified
    assert second.body == b""
    assert seen[1]["If-None-Match"] == '"v1"'
    assert seen[1]["If-Modified-Since"] == "Tue, 24 Nov 2026 06:00:00 GMT"


def test_a_20_mb_body_is_cut_off_at_the_cap(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/huge").respond_with_data(b"<rss>" + b"x" * 20_000_000)
    with Fetcher(timeout=5.0, max_bytes=5_000_000) as capped, pytest.raises(SourceError) as caught:
        capped.read(httpserver.url_for("/huge"))
    assert "over the limit of 5,000,000" in str(caught.value)


# Issue 14: a gzip bomb is stopped while it is decompressed, not after.

BOMB_SIZE = 256 * 1024 * 1024  # what the bomb inflates to
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """256 MiB of zeros in about 250 KB of gzip, built without holding the 256 MiB."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(MiB)
    parts = [packer.compress(zeros) for _ in range(BOMB_SIZE // MiB)]
    parts.append(packer.flush())
    return b"".join(parts)


def serve_bomb(httpserver: HTTPServer, bomb: bytes) -> str:
    httpserver.expect_request("/bomb").respond_with_data(
        bomb, headers={"Content-Encoding": "gzip"}, content_type="application/rss+xml"
    )
    return httpserver.url_for("/bomb")


def peak_growth(work: Callable[[], object]) -> int:
    """The peak of Python allocations (all threads) while ``work`` runs, above where it started."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        start, _ = tracemalloc.get_traced_memory()
        work()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - start


def test_a_gzip_bomb_costs_at_most_the_cap_while_decompressing(
    httpserver: HTTPServer, gzip_bomb: bytes
) -> None:
    url = serve_bomb(httpserver, gzip_bomb)
    errors: list[str] = []

    def fetch_once() -> None:
        with Fetcher(timeout=10.0, max_bytes=5_000_000) as capped:
            try:
                capped.read(url)
            except SourceError as exc:
                errors.append(str(exc).splitlines()[0])

    growth = peak_growth(fetch_once)
    assert errors == [f"{url} sent more than the limit of 5,000,000 bytes"]
    print(f"peak growth {growth / MiB:.1f} MiB")
    assert growth < 32 * MiB, f"peak growth {growth / MiB:.1f} MiB"


def test_eight_concurrent_gzip_bombs_stay_bounded(httpserver: HTTPServer, gzip_bomb: bytes) -> None:
    url = serve_bomb(httpserver, gzip_bomb)
    errors: list[str] = []

    def fetch_eight() -> None:
        with Fetcher(timeout=20.0, max_bytes=1_000_000) as capped:

            def one(_: int) -> None:
                try:
                    capped.read(url)
                except SourceError as exc:
                    errors.append(str(exc).splitlines()[0])

            with ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(one, range(8)))

    growth = peak_growth(fetch_eight)
    assert errors == [f"{url} sent more than the limit of 1,000,000 bytes"] * 8
    print(f"peak growth {growth / MiB:.1f} MiB")
    assert growth < 32 * MiB, f"peak growth {growth / MiB:.1f} MiB"


def test_a_gzip_body_under_the_cap_is_read_whole(httpserver: HTTPServer) -> None:
    body = b"<rss>" + b"news " * 50_000 + b"</rss>"
    # Two gzip members back to back are one valid body (RFC 1952).
    packed = gzip.compress(body[:1000]) + gzip.compress(body[1000:])
    httpserver.expect_request("/feed").respond_with_data(
        packed, headers={"Content-Encoding": "gzip"}, content_type="application/rss+xml"
    )
    with Fetcher(timeout=5.0, max_bytes=len(body)) as exact:
        assert exact.read(httpserver.url_for("/feed")) == body


def test_a_deflate_body_is_read_whole(httpserver: HTTPServer) -> None:
    body = b'{"coins": [' + b'"bitcoin", ' * 10_000 + b'"ether"]}'
    httpserver.expect_request("/zlib").respond_with_data(
        zlib.compress(body), headers={"Content-Encoding": "deflate"}
    )
    raw = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    httpserver.expect_request("/raw").respond_with_data(
        raw.compress(body) + raw.flush(), headers={"Content-Encoding": "deflate"}
    )
    with Fetcher(timeout=5.0, max_bytes=1_000_000) as fetcher:
        assert fetcher.read(httpserver.url_for("/zlib")) == body
        assert fetcher.read(httpserver.url_for("/raw")) == body


def test_an_unknown_content_encoding_is_refused_with_its_name(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/br").respond_with_data(
        b"\x0b\x02\x80hello\x03", headers={"Content-Encoding": "compress"}
    )
    with Fetcher(timeout=5.0, max_bytes=1_000_000) as fetcher, pytest.raises(SourceError) as caught:
        fetcher.read(httpserver.url_for("/br"))
    assert "content encoding 'compress'" in str(caught.value)


def test_a_retry_after_counts_for_its_own_answer_only(
    httpserver: HTTPServer, fetcher: Fetcher, waits: list[float]
) -> None:
    httpserver.expect_ordered_request("/feed").respond_with_data(
        "slow down", status=429, headers={"Retry-After": "3"}
    )
    httpserver.expect_ordered_request("/feed").respond_with_data("busy", status=503)
    httpserver.expect_ordered_request("/feed").respond_with_data("<rss/>")
    fetched = fetcher.fetch(httpserver.url_for("/feed"))
    assert fetched.attempts == 3
    assert waits == [3.0, 1.0]  # the server's wait, then the backoff of a second retry


def test_a_retry_after_date_is_honoured(
    httpserver: HTTPServer, fetcher: Fetcher, waits: list[float]
) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    httpserver.expect_ordered_request("/markets").respond_with_data(
        "slow down", status=503, headers={"Retry-After": when}
    )
    httpserver.expect_ordered_request("/markets").respond_with_data("[]")
    assert fetcher.read(httpserver.url_for("/markets")) == b"[]"
    assert len(waits) == 1 and 20 < waits[0] <= 30


def test_a_dropped_connection_is_retried_and_then_reported(
    fetcher: Fetcher, waits: list[float]
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/feed.xml"  # nothing listens there any more
    with pytest.raises(SourceError, match=f"cannot fetch {url}"):
        fetcher.read(url)
    assert waits == [0.5, 1.0]
