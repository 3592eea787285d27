"""HTTP behaviour of the fetcher against a real local server: retries, Retry-After, conditional GET."""

from __future__ import annotations

from collections.abc import Iterator

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
