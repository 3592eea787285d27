"""An archive worth sharing: the Atom feed carries each edition's full content, made safe; the
archive pages carry a description and OpenGraph and Twitter-card meta; ``/sitemap.xml`` lists every
edition by its absolute URL; an edition's page shows the mail's placement and disclaimer and passes
an axe-core audit (WCAG 2.1 AA and best practice) in chromium.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import date
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree

import feedparser
import pytest
from playwright.sync_api import Browser, sync_playwright
from sqlalchemy import select, update

from newsletter import screenshot
from newsletter.bootstrap import App
from newsletter.models import IssueVariant
from newsletter.services import sponsors
from newsletter.sponsors import NewPlacement
from newsletter.web import create_app
from subscribers.service import add_subscriber
from tests.conftest import FIXED_NOW, free_port
from tests.web_fixtures import Web, serve, stop, web_factory

__all__ = ["web_factory"]  # the fixture, used by name

BASE = "https://news.example.org/daily"
EDITIONS = (date(2026, 11, 24), date(2026, 11, 25))
PLACEMENT = NewPlacement(
    name="Example Vaults",
    url="https://vaults.example.org/newsletter",
    text="Cold storage you can audit: hardware wallets from Example Vaults.",
    start_date=date(2026, 11, 24),
    end_date=date(2026, 11, 24),
)
AXE = Path(__file__).resolve().parent.parent / "node_modules" / "axe-core" / "axe.min.js"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]


class Meta(HTMLParser):
    """The ``<meta>`` and ``<link rel=canonical>`` of a page, by name or property."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "meta" and found.get("content") is not None:
            key = found.get("property") or found.get("name")
            if key:
                self.values[key] = found["content"] or ""
        if tag == "link" and found.get("rel") == "canonical":
            self.values["canonical"] = found.get("href") or ""


def meta_of(html: str) -> dict[str, str]:
    parser = Meta()
    parser.feed(html)
    return parser.values


def sent_editions(web: Web) -> None:
    sponsors.add(web.app.database, web.app.settings, PLACEMENT, now=FIXED_NOW)
    with web.app.database.transaction() as session:
        add_subscriber(session, "reader@example.com", confirmed=True)
    web.app.sources.fetch(now=FIXED_NOW)
    for day in EDITIONS:
        web.app.sending.send(edition_date=day, now=FIXED_NOW)


def test_the_feed_carries_each_editions_full_content_sanitised(
    web_factory: Callable[..., Web], database_url: str
) -> None:
    web = web_factory(database_url, base_url=BASE)
    sent_editions(web)
    with web.app.database.transaction() as session:  # a hostile line in a stored edition
        session.execute(
            update(IssueVariant).values(
                html=IssueVariant.html.concat(
                    '<p onclick="steal()">x<script>steal()</script>'
                    '<a href="javascript:steal()">bad</a><img src="x" onerror="steal()"></p>'
                )
            )
        )
    answer = web.client.get("/archive.atom")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/atom+xml")
    feed = feedparser.parse(answer.content, sanitize_html=False)
    assert not feed.bozo, feed.get("bozo_exception")
    assert feed.version == "atom10"
    assert [entry.link for entry in feed.entries] == [
        f"{BASE}/archive/{day.isoformat()}" for day in reversed(EDITIONS)
    ]
    for entry in feed.entries:
        (content,) = entry.content
        assert content.type == "text/html"
        html = content.value
        assert "Top stories" in html and "Not financial advice" in html
        assert "reader@example.com" not in html and "__NL_" not in html
        for hostile in ("<script", "steal()", "onclick", "onerror", "javascript:", "style="):
            assert hostile not in html, hostile
        assert "View in browser</a>" not in html.split("Unsubscribe")[0]  # the mail's top bar
    newest, oldest = (entry.content[0].value for entry in feed.entries)
    assert ">Sponsored</p>" in oldest and PLACEMENT.text in oldest
    assert 'href="https://vaults.example.org/newsletter" rel="sponsored"' in oldest
    assert "Sponsored" not in newest


def test_the_sitemap_lists_every_edition_by_absolute_url(
    web_factory: Callable[..., Web], database_url: str
) -> None:
    web = web_factory(database_url, base_url=BASE)
    sent_editions(web)
    web.app.editions.build(edition_date=date(2026, 11, 26), now=FIXED_NOW)  # a draft: not public
    answer = web.client.get("/sitemap.xml")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/xml")
    root = ElementTree.fromstring(answer.content)
    space = {"s": "http://www.sitemaps.org/schemas/sitemap/0.9"}
    assert root.tag == "{http://www.sitemaps.org/schemas/sitemap/0.9}urlset"
    urls = [node.findtext("s:loc", namespaces=space) for node in root.findall("s:url", space)]
    assert urls == [
        f"{BASE}/",
        f"{BASE}/archive",
        f"{BASE}/archive/2026-11-25",
        f"{BASE}/archive/2026-11-24",
    ]
    lastmods = [
        node.findtext("s:lastmod", namespaces=space) for node in root.findall("s:url", space)
    ]
    assert all(
        re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", value or "") for value in lastmods[1:]
    )


def test_archive_pages_carry_a_description_and_share_meta(
    web_factory: Callable[..., Web], sqlite_url: str
) -> None:
    web = web_factory(sqlite_url, base_url=BASE)
    sent_editions(web)
    listing = meta_of(web.client.get("/archive").text)
    assert listing["canonical"] == listing["og:url"] == f"{BASE}/archive"
    assert listing["og:type"] == "website"
    assert "Every edition" in listing["description"] == listing["og:description"]
    assert listing["twitter:card"] == "summary"

    page = web.client.get("/archive/2026-11-24")
    assert page.status_code == 200
    meta = meta_of(page.text)
    title = re.search(r"<title>([^<]+)</title>", page.text)
    assert title is not None
    assert meta["og:title"] == meta["twitter:title"] == title.group(1).replace("&amp;", "&")
    assert meta["canonical"] == meta["og:url"] == f"{BASE}/archive/2026-11-24"
    assert meta["og:type"] == "article"
    assert meta["description"] == meta["og:description"] == meta["twitter:description"]
    assert meta["description"].startswith("Bitcoin")
    assert meta["twitter:card"] == "summary"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta["article:published_time"])
    assert page.text.count("<main") == 1 and page.text.count("</main>") == 1
    assert page.text.count("<h1") == 1
    assert ">Sponsored</p>" in page.text and "Not financial advice" in page.text


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium, args=list(screenshot.CHROMIUM_ARGS)
        )
        yield launched
        launched.close()


@pytest.mark.browser
def test_the_edition_page_passes_axe_in_chromium(
    app_factory: Callable[..., App], sqlite_url: str, browser: Browser
) -> None:
    if not AXE.is_file():
        pytest.fail(f"axe-core is not installed ({AXE}): run 'npm ci'")
    port = free_port()
    app = app_factory(database_url=sqlite_url, base_url=f"http://127.0.0.1:{port}")
    sponsors.add(app.database, app.settings, PLACEMENT, now=FIXED_NOW)
    with app.database.transaction() as session:
        add_subscriber(session, "reader@example.com", confirmed=True)
    app.sources.fetch(now=FIXED_NOW)
    app.sending.send(edition_date=EDITIONS[0], now=FIXED_NOW)
    server = serve(create_app(app), port)
    try:
        context = browser.new_context(bypass_csp=True)  # lets the audit script run on the page
        page = context.new_page()
        for path in ("/archive/2026-11-24", "/archive"):
            for width in (1280, 375):
                page.set_viewport_size({"width": width, "height": 900})
                page.goto(f"{server.url}{path}")
                page.add_script_tag(path=str(AXE))
                result = page.evaluate(
                    "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", AXE_TAGS
                )
                violations = [
                    (item["id"], item["impact"], [node["target"] for node in item["nodes"]][:3])
                    for item in result["violations"]
                ]
                assert violations == [], f"{path} at {width} px: {violations}"
        context.close()
    finally:
        stop(server)


def test_an_edition_stored_before_its_masthead_was_a_heading_still_gets_one(
    web_factory: Callable[..., Web], sqlite_url: str
) -> None:
    web = web_factory(sqlite_url, base_url=BASE)
    sent_editions(web)
    with web.app.database.transaction() as session:
        for stored in session.scalars(select(IssueVariant)):
            stored.html = stored.html.replace('<h1 class="brand"', '<p class="brand"').replace(
                "</h1>", "</p>"
            )
    page = web.client.get("/archive/2026-11-24").text
    assert page.count("<h1") == 1 and 'class="brand"' in page.split("<h1")[1]
