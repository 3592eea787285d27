"""The email as mail clients see it: Gmail's clip size, CSS support, mobile width, hostile content."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import shutil
import subprocess
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import pytest

from newsletter.bootstrap import App
from newsletter.digest import Story
from newsletter.editions import get_issue, variant
from newsletter.ingest import store_items
from newsletter.models import IssueStatus
from newsletter.personal import Links
from newsletter.render import GMAIL_CLIP_BYTES, EditionContext, RenderedEdition, Renderer
from newsletter.resources import templates_dir
from newsletter.sources.feeds import FeedItem
from tests.conftest import FIXED_NOW, ROOT
from tests.test_golden import CLOCK, fixed_digest

CONTEXT = EditionContext(
    newsletter_name="Daily Crypto Insights",
    links=Links("https://crypto.example.com"),
    postal_address="1 Example Street, 10115 Berlin, Germany",
    unsubscribe_address="unsubscribe@example.com",
    timezone="Europe/Berlin",
)

#: caniemail reports these for Gmail or Outlook; each degrades without breaking the layout.
DEGRADES_GRACEFULLY = {
    "@media": "dark-mode colours and small-screen padding only; the table layout stands without them",
    "<body> element": "clients replace <body> by a <div>; the outer table carries the background",
    "display:none": (
        "hides the preheader, with max-height:0, overflow:hidden, mso-hide:all and opacity:0; "
        "where all are unsupported it shows as 1 px text (no text in the background's colour: "
        "spam filters score that)"
    ),
    "overflow": "part of hiding the preheader, same fallback",
    "opacity": "part of hiding the preheader, same fallback",
    "border-radius": "rounded corners are decoration",
    "white-space": "keeps prices on one line; where dropped a price may wrap, still readable",
    "role attribute": "accessibility hint for screen readers",
    "aria-label attribute": "accessibility hint for screen readers",
}


def long_edition(count: int = 50) -> RenderedEdition:
    stories = tuple(
        Story(
            title=("Spot bitcoin ETFs, stablecoin rules and the week's funding rates " * 5)[:300],
            url=f"https://news.example.com/2026/11/24/a-long-slug-for-story-{number}-on-markets?id={number}",
            source=("Chainwire", "Ledger Daily", "DeFi Desk")[number % 3],
            published_at=CLOCK - timedelta(minutes=number),
            teaser=("Flows, funding rates and liquidations across the major venues. " * 6)[:300],
        )
        for number in range(count)
    )
    digest = dataclasses.replace(fixed_digest(), stories=stories)
    return Renderer([templates_dir()]).render_edition(digest, context=CONTEXT)


def test_the_largest_edition_stays_under_gmails_clip_size() -> None:
    rendered = long_edition(50)
    assert len(rendered.html.encode("utf-8")) < GMAIL_CLIP_BYTES - 2048
    assert rendered.stories_dropped > 0
    kept = 50 - rendered.stories_dropped
    assert rendered.html.count('class="story-title"') == kept
    assert len(re.findall(r"^\d+\. ", rendered.text, re.MULTILINE)) == kept
    assert f"· {kept} stories ·" in rendered.subject


def test_a_normal_edition_keeps_every_story() -> None:
    rendered = long_edition(8)
    assert rendered.stories_dropped == 0
    assert rendered.html.count('class="story-title"') == 8


TOPICS = [
    "bitcoin",
    "ether",
    "solana",
    "spot",
    "ETFs",
    "funding",
    "rates",
    "liquidations",
    "venues",
    "options",
    "futures",
    "miners",
    "stablecoins",
    "treasury",
    "custody",
    "rollups",
    "staking",
    "validators",
    "bridges",
    "exchanges",
    "lending",
    "yields",
    "derivatives",
    "basis",
    "premium",
    "outflows",
    "inflows",
    "regulators",
    "courts",
    "tokens",
    "wallets",
    "fees",
    "blocks",
    "hashrate",
    "halving",
    "issuers",
    "auctions",
    "auditors",
    "reserves",
    "desks",
    "traders",
    "whales",
    "retail",
]


def long_title(number: int) -> str:
    """A long title of its own: stories that only share a long title are one story twice (the
    selection drops near-duplicates), which is not what a size test is about."""
    words = random.Random(number).sample(TOPICS, 30)
    return f"{number}: " + " ".join(words)


def test_stories_left_out_for_size_stay_available(
    app_factory: Callable[..., App], sqlite_url: str
) -> None:
    app = app_factory(database_url=sqlite_url, article_count=50, per_source_cap=50, feeds=[])
    app.sources.fetch(now=FIXED_NOW)  # the market section takes its share of the size too
    with app.database.transaction() as session:
        store_items(
            session,
            [
                FeedItem(
                    source="Ledger Daily",
                    guid=f"long-{number}",
                    url=f"https://news.example.com/long/{number}",
                    title=long_title(number),
                    summary="Flows, funding rates and liquidations across the venues. " * 5,
                    published_at=FIXED_NOW - timedelta(minutes=number),
                )
                for number in range(50)
            ],
            first_seen_at=FIXED_NOW,
        )
    first = app.editions.build(edition_date=date(2026, 11, 24), now=FIXED_NOW)
    assert first.stories_dropped > 0
    assert first.stories + first.stories_dropped == 50
    with app.database.transaction() as session:
        issue = get_issue(session, date(2026, 11, 24))
        assert issue is not None
        assert len(issue.articles) == first.stories
        issue.status = IssueStatus.SENT
    later = FIXED_NOW + timedelta(days=1)
    second = app.editions.build(edition_date=date(2026, 11, 25), now=later)
    assert second.stories == first.stories_dropped  # the rest, and nothing shown twice


def html_lint(path: Path) -> list[str]:
    node = shutil.which("node")
    module = ROOT / "node_modules" / "@jsx-email" / "doiuse-email"
    if node is None or not module.is_dir():
        reason = "node and the npm packages (npm ci) are needed for the caniemail check"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    result = subprocess.run(
        [node, str(ROOT / "tools" / "caniemail.mjs"), str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    errors: list[str] = json.loads(result.stdout)["errors"]
    return errors


@pytest.mark.parametrize("golden", ["issue.html", "empty.html"])
def test_no_css_that_gmail_or_outlook_drop_for_layout(golden: str) -> None:
    errors = html_lint(ROOT / "tests" / "golden" / golden)
    features = {match.group(1) for error in errors if (match := re.match(r"`([^`]+)`", error))}
    unexplained = sorted(features - set(DEGRADES_GRACEFULLY))
    assert not unexplained, (
        "CSS or HTML that Gmail or Outlook do not support; make it degrade gracefully and explain "
        f"why in DEGRADES_GRACEFULLY, or remove it: {unexplained}"
    )


def test_no_script_no_svg_no_webfont_in_the_edition() -> None:
    html = long_edition(8).html.lower()
    for forbidden in ("<script", "<svg", "@font-face", "<link", "<iframe", "<form", "javascript:"):
        assert forbidden not in html


def test_images_only_when_allowed_and_only_https() -> None:
    story = Story(
        title="With a picture",
        url="https://news.example.com/a",
        source="Chainwire",
        published_at=CLOCK,
        teaser="",
        image_url="https://img.example.com/a.jpg",
    )
    digest = dataclasses.replace(fixed_digest(), stories=(story,))
    off = Renderer([templates_dir()]).render_edition(digest, context=CONTEXT)
    assert "<img" not in off.html
    on = Renderer([templates_dir()]).render_edition(
        digest, context=dataclasses.replace(CONTEXT, show_images=True)
    )
    assert 'src="https://img.example.com/a.jpg"' in on.html
    assert 'alt=""' in on.html


HOSTILE_FEED = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Hostile</title><link>https://evil.example.net/</link>
<item><title>Breaking &lt;script&gt;alert(1)&lt;/script&gt; news</title>
<link>https://evil.example.net/a?utm_source=x</link><guid>h1</guid>
<pubDate>Tue, 24 Nov 2026 05:00:00 GMT</pubDate>
<description><![CDATA[<p onclick="steal()">Read <a href="javascript:alert(1)">this</a>
<img src="https://t.example.net/pixel.gif" width="1" height="1">
<span style="width: expression(alert(1))">now</span><script>document.cookie</script>
<iframe src="data:text/html;base64,PHNjcmlwdD4="></iframe></p>]]></description></item>
<item><title>Click me</title><link>javascript:alert(document.domain)</link><guid>h2</guid></item>
<item><title>Data link</title><link>data:text/html,&lt;script&gt;1&lt;/script&gt;</link><guid>h3</guid></item>
</channel></rss>"""


def test_nothing_hostile_reaches_the_email(
    app_factory: Callable[..., App], sqlite_url: str, tmp_path: Path
) -> None:
    hostile = tmp_path / "hostile.xml"
    hostile.write_text(HOSTILE_FEED, encoding="utf-8")
    app = app_factory(
        database_url=sqlite_url,
        feeds=[{"name": "Hostile", "url": str(hostile)}],
        show_images=True,
    )
    app.sources.fetch(now=FIXED_NOW)
    result = app.editions.build(edition_date=date(2026, 11, 24), now=FIXED_NOW)
    assert result.stories == 1
    with app.database.transaction(readonly=True) as session:
        issue = get_issue(session, date(2026, 11, 24))
        assert issue is not None
        stored = variant(session, issue)
        html, text = stored.html.lower(), stored.text.lower()
    assert "<script" not in html
    assert "javascript:" not in html and "javascript:" not in text
    assert "data:text" not in html
    assert not re.search(r"<[^>]+\son\w+\s*=", html)
    assert "expression(" not in html
    assert "pixel.gif" not in html
    assert "<iframe" not in html
    assert "breaking news" in html  # the title keeps its words, the script is gone


@pytest.mark.browser
def test_nothing_overflows_on_a_375_px_phone(tmp_path: Path, chromium: str) -> None:
    from newsletter.screenshot import screenshots

    page = tmp_path / "edition.html"
    page.write_text(long_edition(8).html, encoding="utf-8")
    shots = {shot.width: shot for shot in screenshots(page, chromium=chromium)}
    assert shots[375].overflow == 0
    assert shots[600].overflow == 0
    assert shots[375].path.stat().st_size > 10_000
