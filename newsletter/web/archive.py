"""The public archive: the list of editions sent, each edition's web version, an Atom feed with
each edition's full content, and a sitemap.

Only editions that went out (sending or sent) are public. The web version is the stored HTML of the
edition with the personal tokens replaced by public values (no address, no personal links), so it is
the same for everyone and may be cached; the page adds a description, OpenGraph and Twitter-card
meta, and a main landmark around the mail's body. Every URL given out here is absolute, from the
configured public base URL (``NEWSLETTER_BASE_URL``), never from the request.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from xml.sax.saxutils import escape

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from newsletter.services.archive import (
    SITEMAP_SIZE,
    EditionPage,
    feed_entries,
    public_editions,
    public_page,
)
from newsletter.web.security import EDITION_POLICY
from newsletter.web.state import State

router = APIRouter(tags=["archive"])

CACHE = "public, max-age=300"
FEED_SIZE = 30
TAGLINE = "Daily crypto insights that make you smarter about your money"
_BODY_OPEN = re.compile(r"<body\b[^>]*>", re.IGNORECASE)
_BODY_CLOSE = re.compile(r"</body>", re.IGNORECASE)
_HEAD_CLOSE = re.compile(r"</head>", re.IGNORECASE)
#: The masthead of editions stored before it was a heading.
_OLD_MASTHEAD = re.compile(r'<p class="brand"([^>]*)>(.*?)</p>', re.DOTALL)


@router.get(
    "/archive",
    response_class=HTMLResponse,
    responses={200: {"content": {"text/html": {}}, "description": "The list of editions."}},
    summary="The editions sent so far",
)
def archive(request: Request, state: State) -> Response:
    editions = [
        (row.edition_date.isoformat(), _label(row.edition_date), row.subject, row.preheader)
        for row in public_editions(state.database)
    ]
    site = state.site
    return state.page(
        request,
        "archive.html.j2",
        title="Archive",
        editions=editions,
        cache=CACHE,
        description=f"Every edition of {site.name} sent so far: {TAGLINE.lower()}.",
        canonical=f"{state.links.base_url}/archive",
        share_title=f"{site.name}: the archive",
        og_type="website",
        published=None,
    )


def _label(day: date) -> str:
    return f"{day:%A}, {day.day} {day:%B %Y}"


def _parse(value: str) -> date | None:
    if len(value) != 10:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


@router.get(
    "/archive/{edition_date}",
    response_class=HTMLResponse,
    responses={
        200: {"content": {"text/html": {}}, "description": "The edition's web version."},
        404: {"content": {"text/html": {}}, "description": "No edition was sent that day."},
    },
    summary="An edition's web version (the view-in-browser link)",
)
def edition(edition_date: str, request: Request, state: State) -> Response:
    day = _parse(edition_date)
    found = None if day is None else public_page(state.database, day, links=state.links)
    if found is None:
        return state.message(
            request,
            status=404,
            title="No edition that day",
            text="There is no edition for this date in the archive.",
            hint="The archive lists every edition sent so far.",
        )
    return HTMLResponse(
        _web_version(state, found),
        headers={"content-security-policy": EDITION_POLICY, "cache-control": CACHE},
    )


def _web_version(state: State, page: EditionPage) -> str:
    """The mail's HTML as a page: share meta in its head, its body inside a main landmark."""
    edition = page.edition
    meta = state.renderer.render_page(
        "web/social.html.j2",
        site=state.site,
        description=edition.preheader or edition.subject,
        canonical=state.links.archive(edition.edition_date),
        share_title=edition.subject,
        og_type="article",
        published=_stamp(edition.published_at, edition.edition_date),
    )
    html = _HEAD_CLOSE.sub(lambda _: meta + "</head>", page.html, count=1)
    if "<h1" not in html:
        html = _OLD_MASTHEAD.sub(r'<h1 class="brand"\1>\2</h1>', html, count=1)
    opened = _BODY_OPEN.search(html)
    closed = None if opened is None else _last(_BODY_CLOSE, html)
    if opened is None or closed is None or closed < opened.end():
        return html
    return (
        html[: opened.end()]
        + '<main id="main">'
        + html[opened.end() : closed]
        + "</main>"
        + html[closed:]
    )


def _last(pattern: re.Pattern[str], text: str) -> int | None:
    found = None
    for match in pattern.finditer(text):
        found = match.start()
    return found


def _attr(value: str) -> str:
    return escape(value, {'"': "&quot;"})


def _stamp(value: datetime | None, day: date) -> str:
    moment = value or datetime.combine(day, time(0, 0), tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@router.get(
    "/archive.atom",
    responses={200: {"content": {"application/atom+xml": {}}, "description": "Atom feed."}},
    summary="An Atom feed of the editions",
)
def feed(state: State) -> Response:
    issues = feed_entries(state.database, links=state.links, limit=FEED_SIZE)
    base = state.links.base_url
    site = state.site
    updated = (
        _stamp(issues[0].edition.published_at, issues[0].edition.edition_date)
        if issues
        else "1970-01-01T00:00:00Z"
    )
    entries = []
    for entry in issues:
        row = entry.edition
        url = state.links.archive(row.edition_date)
        entries.append(
            "  <entry>\n"
            f"    <title>{escape(row.subject)}</title>\n"
            f'    <link rel="alternate" type="text/html" href="{_attr(url)}"/>\n'
            f"    <id>{escape(url)}</id>\n"
            f"    <updated>{_stamp(row.published_at, row.edition_date)}</updated>\n"
            f"    <summary>{escape(row.preheader or row.subject)}</summary>\n"
            f'    <content type="html">{escape(entry.html)}</content>\n'
            "  </entry>\n"
        )
    body = (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<feed xmlns="http://www.w3.org/2005/Atom">\n'
        f"  <title>{escape(site.name)}</title>\n"
        f"  <subtitle>{TAGLINE}</subtitle>\n"
        f'  <link rel="self" type="application/atom+xml" href="{_attr(base)}/archive.atom"/>\n'
        f'  <link rel="alternate" type="text/html" href="{_attr(base)}/archive"/>\n'
        f"  <id>{escape(base)}/archive</id>\n"
        f"  <updated>{updated}</updated>\n"
        f"  <author><name>{escape(site.name)}</name></author>\n" + "".join(entries) + "</feed>\n"
    )
    return Response(
        body, media_type="application/atom+xml; charset=utf-8", headers={"cache-control": CACHE}
    )


@router.get(
    "/sitemap.xml",
    responses={200: {"content": {"application/xml": {}}, "description": "The sitemap."}},
    summary="A sitemap of the public pages: the home page, the archive and every edition",
)
def sitemap(state: State) -> Response:
    base = state.links.base_url
    editions = public_editions(state.database, limit=SITEMAP_SIZE)
    urls = [(f"{base}/", None), (f"{base}/archive", editions[0] if editions else None)]
    urls += [(state.links.archive(row.edition_date), row) for row in editions]
    lines = []
    for url, row in urls:
        lastmod = (
            ""
            if row is None
            else f"<lastmod>{_stamp(row.published_at, row.edition_date)}</lastmod>"
        )
        lines.append(f"  <url><loc>{escape(url)}</loc>{lastmod}</url>\n")
    body = (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n'
        + "".join(lines)
        + "</urlset>\n"
    )
    return Response(
        body, media_type="application/xml; charset=utf-8", headers={"cache-control": CACHE}
    )
