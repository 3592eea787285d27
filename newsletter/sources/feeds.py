"""RSS 2.0, Atom and RDF feeds, parsed by feedparser from bytes we fetched ourselves."""

from __future__ import annotations

import calendar
import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import feedparser

from newsletter.errors import SourceError
from newsletter.sanitise import clean_title, html_to_text, strip_trailer, teaser
from newsletter.sources.fetch import Fetched, Fetcher, Validators
from newsletter.sources.urls import canonical_url

log = logging.getLogger(__name__)

_IMG_TAG = re.compile(r"<img\b[^>]*>", re.IGNORECASE)
_IMG_SRC = re.compile(r"""\bsrc\s*=\s*["'](https://[^"'\s>]+)["']""", re.IGNORECASE)
_PIXEL = re.compile(r"""\b(width|height)\s*=\s*["']?[01](px)?["'\s/>]""", re.IGNORECASE)
#: Longest URL stored (links and images); longer ones are not links a reader should follow.
MAX_URL_LENGTH = 2000


@dataclass(frozen=True, slots=True)
class FeedItem:
    source: str
    guid: str
    url: str
    title: str
    summary: str
    published_at: datetime
    author: str | None = None
    image_url: str | None = None


@dataclass(frozen=True, slots=True)
class FeedSource:
    name: str
    url: str
    fetcher: Fetcher

    def fetch(self, *, now: datetime) -> list[FeedItem]:
        return parse_feed(self.fetcher.read(self.url), source=self.name, now=now)

    def fetch_if_changed(self, validators: Validators | None) -> Fetched:
        """The raw feed, or ``not_modified`` when the server says it has not changed."""
        return self.fetcher.fetch(self.url, validators=validators)


def parse_feed(body: bytes, *, source: str, now: datetime) -> list[FeedItem]:
    """The usable items of a feed document. Raises SourceError when it is not a feed at all.

    Items without a title or an http(s) link are skipped (and logged); a missing or impossible date
    becomes ``now``, and a date in the future is clamped to ``now``.
    """
    parsed: Any = feedparser.parse(body, sanitize_html=False, resolve_relative_uris=False)
    if not parsed.entries:
        problem = parsed.get("bozo_exception")
        version = parsed.get("version") or ""
        if problem is not None or not version:
            reason = f": {problem}" if problem is not None else ""
            raise SourceError(f"{source}: the response is not an RSS, Atom or RDF feed{reason}")
        return []
    items: list[FeedItem] = []
    for entry in parsed.entries:
        item = _item(entry, source=source, now=now)
        if item is not None:
            items.append(item)
    return items


def _item(entry: Any, *, source: str, now: datetime) -> FeedItem | None:
    title = clean_title(entry.get("title", ""))
    link = canonical_url(entry.get("link", "") or "")
    if not title or link is None:
        log.info("feed %s: skipped an item without a title or an http(s) link", source)
        return None
    if len(link) > MAX_URL_LENGTH:
        log.info("feed %s: skipped an item whose link is %d characters long", source, len(link))
        return None
    guid = (entry.get("id") or "").strip() or link
    if len(guid) > 1000:
        guid = "sha256:" + hashlib.sha256(guid.encode()).hexdigest()
    raw_summary = entry.get("summary", "") or ""
    contents = entry.get("content") or []
    body = " ".join(part.get("value", "") for part in contents) if contents else ""
    summary = teaser(strip_trailer(html_to_text(raw_summary or body)), 300)
    author = clean_title(entry.get("author", "") or "", 200) or None
    return FeedItem(
        source=source,
        guid=guid,
        url=link,
        title=title,
        summary=summary,
        published_at=_published(entry, now),
        author=author,
        image_url=_image(entry, raw_summary + body),
    )


def _published(entry: Any, now: datetime) -> datetime:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        value = entry.get(key)
        if value:
            try:
                stamp = datetime.fromtimestamp(calendar.timegm(value), tz=UTC)
            except (OverflowError, ValueError, OSError):
                continue
            return min(stamp, now)
    return now


def _image(entry: Any, html: str) -> str | None:
    """The story's picture: an https media thumbnail, image enclosure or <img>; never a 1x1 pixel."""
    candidates: list[str] = []
    for media in entry.get("media_thumbnail", []) or []:
        candidates.append(str(media.get("url", "")))
    for enclosure in entry.get("enclosures", []) or []:
        if str(enclosure.get("type", "")).startswith("image/"):
            candidates.append(str(enclosure.get("href", "")))
    for tag in _IMG_TAG.findall(html):
        source = _IMG_SRC.search(tag)
        if source and not _PIXEL.search(tag):
            candidates.append(source.group(1))
    for url in candidates:
        if url.startswith("https://") and len(url) <= MAX_URL_LENGTH:
            return url
    return None
