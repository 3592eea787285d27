"""The public archive: the list of editions sent, each edition's web version, and an Atom feed.

Only editions that went out (sending or sent) are public. The web version is the stored HTML of the
edition with the personal tokens replaced by public values (no address, no personal links), so it is
the same for everyone and may be cached.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from xml.sax.saxutils import escape

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from newsletter import personal
from newsletter.services.archive import public_editions, public_html
from newsletter.web.security import EDITION_POLICY
from newsletter.web.state import State

router = APIRouter(tags=["archive"])

CACHE = "public, max-age=300"
FEED_SIZE = 30


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
    return state.page(request, "archive.html.j2", title="Archive", editions=editions, cache=CACHE)


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
    html = None if day is None else public_html(state.database, day)
    if html is None:
        return state.message(
            request,
            status=404,
            title="No edition that day",
            text="There is no edition for this date in the archive.",
            hint="The archive lists every edition sent so far.",
        )
    public = personal.fill(html, personal.public_values(state.links))
    return HTMLResponse(
        public,
        headers={"content-security-policy": EDITION_POLICY, "cache-control": CACHE},
    )


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
    issues = public_editions(state.database, limit=FEED_SIZE)
    base = state.links.base_url
    site = state.site
    updated = (
        _stamp(issues[0].published_at, issues[0].edition_date) if issues else "1970-01-01T00:00:00Z"
    )
    entries = []
    for row in issues:
        url = state.links.archive(row.edition_date)
        entries.append(
            "  <entry>\n"
            f"    <title>{escape(row.subject)}</title>\n"
            f'    <link rel="alternate" type="text/html" href="{_attr(url)}"/>\n'
            f"    <id>{escape(url)}</id>\n"
            f"    <updated>{_stamp(row.published_at, row.edition_date)}</updated>\n"
            f"    <summary>{escape(row.preheader or row.subject)}</summary>\n"
            "  </entry>\n"
        )
    body = (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<feed xmlns="http://www.w3.org/2005/Atom">\n'
        f"  <title>{escape(site.name)}</title>\n"
        f"  <subtitle>Daily crypto insights that make you smarter about your money</subtitle>\n"
        f'  <link rel="self" type="application/atom+xml" href="{_attr(base)}/archive.atom"/>\n'
        f'  <link rel="alternate" type="text/html" href="{_attr(base)}/archive"/>\n'
        f"  <id>{escape(base)}/archive</id>\n"
        f"  <updated>{updated}</updated>\n"
        f"  <author><name>{escape(site.name)}</name></author>\n" + "".join(entries) + "</feed>\n"
    )
    return Response(
        body, media_type="application/atom+xml; charset=utf-8", headers={"cache-control": CACHE}
    )
