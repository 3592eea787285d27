"""Reading a source's bytes: over http(s) with httpx, or from a local file of recorded data.

Every read has a timeout (per read and for the whole response) and a size cap, so a hostile or
broken server cannot hang or exhaust us. HTTP reads are conditional when the caller knows the
previous ETag / Last-Modified, and 429 and 5xx answers (and dropped connections) are retried with
exponential backoff, honouring Retry-After up to :data:`MAX_RETRY_AFTER`; a longer one fails the
source for this run at once instead of holding the whole fetch up.

The retries run on ``tenacity`` rather than ``stamina``. stamina, a wrapper over tenacity, is the
better default for a service (jittered backoff, a total time limit, instrumentation), and its
backoff hook can return the wait a Retry-After asks for; but its sleep cannot be injected (its
testing mode only removes waits or caps attempts), so the tests could no longer check the exact
waits, and its jitter and time limit would have to be turned off to keep the settings' meaning
(plain doubling: one reader per source, no herd to spread). tenacity takes all of it as arguments:
a wait strategy (:class:`_RetryAfterOrBackoff`), a stop condition that also stops on a Retry-After
over the cap, and ``sleep``; and stamina would bring it in anyway.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_any,
    wait_exponential,
)
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from newsletter import __version__
from newsletter.errors import SourceError
from newsletter.sources.inflate import (
    ACCEPTED,
    BodyTooLarge,
    UnsupportedEncoding,
    read_bounded,
)

USER_AGENT = f"newsletter/{__version__} (+self-hosted crypto digest; feed reader)"
#: Longest Retry-After we wait for; a longer one fails the source for this run.
MAX_RETRY_AFTER = 60.0
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def is_remote(location: str) -> bool:
    return location.startswith(("http://", "https://"))


@dataclass(frozen=True, slots=True)
class Validators:
    """What a server said about a response, to ask "has it changed?" next time."""

    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True, slots=True)
class Fetched:
    """A source's answer: its body, or ``not_modified`` with no body."""

    body: bytes
    validators: Validators
    not_modified: bool = False
    attempts: int = 1


class Fetcher:
    """Reads URLs and local paths with one shared HTTP client (safe to use from several threads)."""

    def __init__(
        self,
        *,
        timeout: float,
        max_bytes: int,
        retries: int = 2,
        backoff: float = 1.0,
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.retries = retries
        self.backoff = backoff
        self.sleep = sleep
        self._client = client or httpx.Client(
            timeout=httpx.Timeout(timeout),
            follow_redirects=True,
            max_redirects=5,
            # Only what is decoded here, slice by slice, under the cap (see inflate).
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": ACCEPTED},
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def read(
        self,
        location: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> bytes:
        """The body at ``location`` (unconditional)."""
        return self.fetch(location, params=params, headers=headers).body

    def fetch(
        self,
        location: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        validators: Validators | None = None,
    ) -> Fetched:
        """The body at ``location``; ``not_modified`` when the validators still hold."""
        if not is_remote(location):
            return Fetched(self._read_file(Path(location)), Validators())
        request_headers = dict(headers or {})
        if validators and validators.etag:
            request_headers["If-None-Match"] = validators.etag
        if validators and validators.last_modified:
            request_headers["If-Modified-Since"] = validators.last_modified
        retrying = Retrying(
            retry=retry_if_exception_type(_Retry),
            stop=stop_any(stop_after_attempt(self.retries + 1), _AsksTooLong()),
            wait=_RetryAfterOrBackoff(wait_exponential(multiplier=self.backoff)),
            sleep=self.sleep,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    number = attempt.retry_state.attempt_number
                    return self._get(
                        location, params=params, headers=request_headers, attempt=number
                    )
        except _Retry as retry:
            if _too_long(retry):
                raise SourceError(
                    f"{retry.message}; it asks to retry after {retry.wait:.0f} s",
                    hint="the next fetch will try again",
                ) from None
            raise SourceError(retry.message) from None
        raise AssertionError("tenacity ends with an answer or an exception")  # pragma: no cover

    def _read_file(self, path: Path) -> bytes:
        try:
            size = path.stat().st_size
            if size > self.max_bytes:
                raise SourceError(
                    f"{path} is {size:,} bytes, over the limit of {self.max_bytes:,}",
                    hint="raise NEWSLETTER_MAX_RESPONSE_BYTES if this file is expected",
                )
            return path.read_bytes()
        except FileNotFoundError:
            raise SourceError(f"{path} does not exist") from None
        except IsADirectoryError:
            raise SourceError(f"{path} is a directory, not a file") from None
        except OSError as exc:
            raise SourceError(f"cannot read {path}: {exc.strerror}") from None

    def _get(
        self,
        url: str,
        *,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str],
        attempt: int,
    ) -> Fetched:
        # httpx's timeout bounds each read; the deadline bounds the whole response (a trickling server).
        deadline = time.monotonic() + self.timeout
        try:
            with self._client.stream("GET", url, params=params, headers=headers) as response:
                validators = Validators(
                    etag=response.headers.get("etag"),
                    last_modified=response.headers.get("last-modified"),
                )
                if response.status_code == 304:
                    return Fetched(b"", validators, not_modified=True, attempts=attempt)
                if response.status_code in RETRY_STATUSES:
                    raise _Retry(
                        f"{url} answered HTTP {response.status_code} after {attempt} "
                        f"attempt{'s' if attempt > 1 else ''}",
                        wait=_retry_after(response.headers.get("retry-after")),
                    )
                if response.status_code >= 400:
                    raise SourceError(f"{url} answered HTTP {response.status_code}")
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > self.max_bytes:
                    raise SourceError(
                        f"{url} sent {int(declared):,} bytes, over the limit of {self.max_bytes:,}"
                    )
                body = read_bounded(
                    _until(deadline, response.iter_raw()),
                    content_encoding=response.headers.get("content-encoding"),
                    max_bytes=self.max_bytes,
                )
                return Fetched(body, validators, attempts=attempt)
        except BodyTooLarge:
            raise SourceError(
                f"{url} sent more than the limit of {self.max_bytes:,} bytes",
                hint="raise NEWSLETTER_MAX_RESPONSE_BYTES if this source is expected to be that big",
            ) from None
        except UnsupportedEncoding as exc:
            raise SourceError(
                f"{url} answered in content encoding '{exc}', which is not read here "
                f"(only {ACCEPTED} are asked for)"
            ) from None
        except zlib.error as exc:
            raise SourceError(f"{url} sent a body that does not decompress: {exc}") from None
        except httpx.TimeoutException:
            raise SourceError(f"{url} did not answer within {self.timeout:g} s") from None
        except httpx.TooManyRedirects:
            raise SourceError(f"{url} redirected too many times") from None
        except httpx.HTTPError as exc:
            raise _Retry(f"cannot fetch {url}: {exc}", wait=None) from None


def _until(deadline: float, chunks: Iterator[bytes]) -> Iterator[bytes]:
    """The chunks, until the whole response has taken too long (a trickling server)."""
    for chunk in chunks:
        yield chunk
        if time.monotonic() > deadline:
            raise httpx.ReadTimeout("the whole response took too long")


class _Retry(Exception):
    """An answer worth asking again for, with the wait the server asked for (if it did)."""

    def __init__(self, message: str, *, wait: float | None) -> None:
        super().__init__(message)
        self.message = message
        self.wait = wait


def _failure(state: RetryCallState) -> _Retry | None:
    error = state.outcome.exception() if state.outcome is not None else None
    return error if isinstance(error, _Retry) else None


def _too_long(retry: _Retry) -> bool:
    return retry.wait is not None and retry.wait > MAX_RETRY_AFTER


class _AsksTooLong(stop_base):
    """Stop now: the server asks for a longer wait than a fetch may spend."""

    def __call__(self, retry_state: RetryCallState) -> bool:
        retry = _failure(retry_state)
        return retry is not None and _too_long(retry)


class _RetryAfterOrBackoff(wait_base):
    """The Retry-After of the failed answer when it gave one, else the backoff strategy's wait."""

    def __init__(self, backoff: wait_base) -> None:
        self.backoff = backoff

    def __call__(self, retry_state: RetryCallState) -> float:
        retry = _failure(retry_state)
        if retry is not None and retry.wait is not None:
            return retry.wait
        return self.backoff(retry_state)


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return max(seconds, 0.0)
