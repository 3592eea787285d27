"""Reading a source's bytes: over http(s) with httpx, or from a local file of recorded data.

Every read has a timeout and a size cap, so a hostile or broken server cannot hang or exhaust us.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from newsletter import __version__
from newsletter.errors import SourceError

USER_AGENT = f"newsletter/{__version__} (+self-hosted crypto digest; feed reader)"


def is_remote(location: str) -> bool:
    return location.startswith(("http://", "https://"))


class Fetcher:
    """Reads URLs and local paths with one shared HTTP client."""

    def __init__(
        self, *, timeout: float, max_bytes: int, client: httpx.Client | None = None
    ) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes
        self._client = client or httpx.Client(
            timeout=httpx.Timeout(timeout),
            follow_redirects=True,
            headers={"User-Agent": USER_AGENT},
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
        if is_remote(location):
            return self._get(location, params=params, headers=headers)
        return self._read_file(Path(location))

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
        headers: Mapping[str, str] | None,
    ) -> bytes:
        # httpx's timeout bounds each read; the deadline bounds the whole response (a trickling server).
        deadline = time.monotonic() + self.timeout
        try:
            with self._client.stream("GET", url, params=params, headers=headers) as response:
                if response.status_code >= 400:
                    raise SourceError(f"{url} answered HTTP {response.status_code}")
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > self.max_bytes:
                    raise SourceError(
                        f"{url} sent {int(declared):,} bytes, over the limit of {self.max_bytes:,}"
                    )
                body = bytearray()
                for chunk in response.iter_bytes():
                    body.extend(chunk)
                    if len(body) > self.max_bytes:
                        raise SourceError(
                            f"{url} sent more than the limit of {self.max_bytes:,} bytes"
                        )
                    if time.monotonic() > deadline:
                        raise httpx.ReadTimeout("the whole response took too long")
                return bytes(body)
        except httpx.TimeoutException:
            raise SourceError(f"{url} did not answer within {self.timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise SourceError(f"cannot fetch {url}: {exc}") from None
