"""Sponsor placements as a product: scheduled by date range, labelled, reported, optionally counted.

Placements are stored (CLI ``newsletter sponsors``, ``/api/sponsors``), one per edition: their ranges
never overlap. Each edition that carries one shows it labelled "Sponsored" in the HTML part, the
text part and the archive page, with its text made plain. The report counts per placement the
editions that carried it and their sent deliveries. With NEWSLETTER_SPONSOR_CLICK_COUNTS the link
goes through a signed first-party redirect that counts per placement and edition and nothing else.
"""

from __future__ import annotations

import email
import email.policy
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import date
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import inspect

from newsletter.bootstrap import App
from newsletter.cli import cli
from newsletter.editions import get_issue
from newsletter.errors import PlacementConflict, SponsorError, UnknownPlacement
from newsletter.models import SponsorClick
from newsletter.render import PRIVACY_COUNTED, PRIVACY_PLAIN
from newsletter.services import sponsors
from newsletter.sponsors import NewPlacement
from newsletter.web import create_app
from subscribers.model import MailFormat
from subscribers.service import add_subscriber
from tests.conftest import FIXED_NOW, SmtpServer, free_port
from tests.web_fixtures import BASE_URL, Web, serve, stop, web_factory

__all__ = ["web_factory"]  # the fixture, used by name

EDITION = date(2026, 11, 24)
NEXT = date(2026, 11, 25)
URL = "https://vaults.example.org/newsletter?from=daily&slot=1"
TEXT = "Cold storage you can audit: hardware wallets from Example Vaults."
PLACEMENT = NewPlacement(
    name="Example Vaults",
    url=URL,
    text=TEXT,
    start_date=date(2026, 11, 20),
    end_date=date(2026, 11, 26),
)


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def body(message: EmailMessage, kind: str) -> str:
    part = message.get_body((kind,))
    assert part is not None, f"no {kind} part"
    content: str = part.get_content()  # type: ignore[attr-defined]
    return content


def words(text: str) -> str:
    return " ".join(text.split())


def sponsor_links(html: str) -> list[str]:
    return [
        link.replace("&amp;", "&") for link in re.findall(r'href="([^"]+)" rel="sponsored"', html)
    ]


def add_readers(app: App, count: int) -> None:
    with app.database.transaction() as session:
        for number in range(count):
            add_subscriber(session, f"reader{number}@example.com", confirmed=True)


def test_a_placement_reaches_the_mailbox_labelled_in_html_and_text(
    app_factory: Callable[..., App], database_url: str, smtp_server: SmtpServer
) -> None:
    app = app_factory(
        database_url=database_url,
        transport="smtp",
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
    )
    placement = sponsors.add(app.database, app.settings, PLACEMENT, now=FIXED_NOW)
    app.sources.fetch(now=FIXED_NOW)
    with app.database.transaction() as session:
        add_subscriber(session, "html@example.com", confirmed=True)
        fan, _ = add_subscriber(session, "eth-fan@example.com", confirmed=True)
        fan.watchlist = ["ethereum"]
        plain, _ = add_subscriber(session, "plain@example.com", confirmed=True)
        plain.format = MailFormat.TEXT
    outcome = app.sending.send(edition_date=EDITION, now=FIXED_NOW, clock=lambda: FIXED_NOW)
    assert outcome.report is not None and outcome.report.sent == 3

    received = {item.recipients[0]: parse(item.data) for item in smtp_server.messages}
    for address in ("html@example.com", "eth-fan@example.com"):
        html = body(received[address], "html")
        assert ">Sponsored</p>" in html
        assert TEXT in html and "Example Vaults" in html
        assert sponsor_links(html) == [URL]  # clicks are not counted: straight to the sponsor
        assert PRIVACY_PLAIN in html
    for address in received:
        text = body(received[address], "plain").replace("\r\n", "\n")
        assert "\nSPONSORED\nExample Vaults\n" in text
        assert TEXT in words(text) and URL in text
        assert words(PRIVACY_PLAIN) in words(text)
    with app.database.transaction(readonly=True) as session:
        issue = get_issue(session, EDITION)
        assert issue is not None and issue.sponsor_placement_id == placement.id


def test_the_archive_page_shows_the_placement_labelled(
    web_factory: Callable[..., Web], database_url: str
) -> None:
    web = web_factory(database_url)
    sponsors.add(web.app.database, web.app.settings, PLACEMENT, now=FIXED_NOW)
    web.subscribed("reader@example.com")
    web.app.sources.fetch(now=FIXED_NOW)
    web.app.sending.send(edition_date=EDITION, now=FIXED_NOW)
    page = web.client.get(f"/archive/{EDITION.isoformat()}")
    assert page.status_code == 200
    assert ">Sponsored</p>" in page.text
    assert TEXT in page.text
    assert "Not financial advice" in page.text


def test_overlapping_ranges_are_refused_with_the_clash_named(
    app_factory: Callable[..., App], database_url: str
) -> None:
    app = app_factory(database_url=database_url)
    first = sponsors.add(app.database, app.settings, PLACEMENT, now=FIXED_NOW)
    for start, end in ((date(2026, 11, 26), date(2026, 11, 30)), (date(2026, 11, 1), NEXT)):
        clash = NewPlacement(
            name="Desk",
            url="https://desk.example.org/",
            text="A desk.",
            start_date=start,
            end_date=end,
        )
        with pytest.raises(
            PlacementConflict, match=rf"overlap placement {first.id} \(Example Vaults"
        ):
            sponsors.add(app.database, app.settings, clash, now=FIXED_NOW)
    after = NewPlacement(
        name="Desk",
        url="https://desk.example.org/",
        text="A desk.",
        start_date=date(2026, 11, 27),
        end_date=date(2026, 11, 30),
    )
    sponsors.add(app.database, app.settings, after, now=FIXED_NOW)
    assert [item.name for item in sponsors.placements(app.database)] == ["Example Vaults", "Desk"]


def test_a_range_over_a_settings_slot_is_refused(
    app_factory: Callable[..., App], sqlite_url: str
) -> None:
    slot = {"date": EDITION, "text": "A settings slot.", "url": "https://slot.example.org/"}
    app = app_factory(database_url=sqlite_url, sponsors=[slot])
    with pytest.raises(PlacementConflict, match=r"\[\[sponsors\]\] slot on 2026-11-24"):
        sponsors.add(app.database, app.settings, PLACEMENT, now=FIXED_NOW)


def test_sponsor_text_is_made_plain_and_links_must_be_https(
    app_factory: Callable[..., App], sqlite_url: str
) -> None:
    app = app_factory(database_url=sqlite_url)
    hostile = NewPlacement(
        name="<b>Vaults</b>",
        url=URL,
        text='<script>alert("x")</script><p onclick="x()">Audit <a href="https://evil.example">your</a> keys</p>',
        image_url="https://vaults.example.org/banner.png",
        start_date=EDITION,
        end_date=EDITION,
    )
    stored = sponsors.add(app.database, app.settings, hostile, now=FIXED_NOW)
    assert (stored.name, stored.text) == ("Vaults", "Audit your keys")
    app.sources.fetch(now=FIXED_NOW)
    app.editions.build(edition_date=EDITION, now=FIXED_NOW)
    html = app.editions.preview(edition_date=EDITION).read_text(encoding="utf-8")
    assert "<script" not in html and "evil.example" not in html and "onclick" not in html
    assert 'src="https://vaults.example.org/banner.png" alt="Vaults"' in html
    for field, value in (
        ("url", "javascript:alert(1)"),
        ("url", "http://plain.example/"),
        ("image_url", "data:image/png;base64,AAAA"),
        ("url", 'https://a.example/"x'),
    ):
        later = replace(PLACEMENT, start_date=date(2027, 1, 1), end_date=date(2027, 1, 1))
        bad = replace(later, **{field: value})
        with pytest.raises(SponsorError, match="not a plain https:// URL"):
            sponsors.add(app.database, app.settings, bad, now=FIXED_NOW)
    empty = NewPlacement(
        name="Vaults",
        url=URL,
        text="<script>only()</script>",
        start_date=date(2027, 1, 1),
        end_date=date(2027, 1, 1),
    )
    with pytest.raises(SponsorError, match="text is empty"):
        sponsors.add(app.database, app.settings, empty, now=FIXED_NOW)
    backwards = NewPlacement(
        name="Vaults", url=URL, text=TEXT, start_date=date(2027, 1, 2), end_date=date(2027, 1, 1)
    )
    with pytest.raises(SponsorError, match=r"ends .* before it starts"):
        sponsors.add(app.database, app.settings, backwards, now=FIXED_NOW)


def test_the_report_counts_editions_and_sent_deliveries(
    app_factory: Callable[..., App], database_url: str
) -> None:
    app = app_factory(database_url=database_url)
    placement = sponsors.add(app.database, app.settings, PLACEMENT, now=FIXED_NOW)
    later = NewPlacement(
        name="Desk",
        url="https://desk.example.org/",
        text="A desk.",
        start_date=date(2026, 12, 1),
        end_date=date(2026, 12, 7),
    )
    sponsors.add(app.database, app.settings, later, now=FIXED_NOW)
    app.sources.fetch(now=FIXED_NOW)
    add_readers(app, 3)
    app.sending.send(edition_date=EDITION, now=FIXED_NOW, clock=lambda: FIXED_NOW)
    with app.database.transaction() as session:
        for number in range(2):
            add_subscriber(session, f"late{number}@example.com", confirmed=True)
    app.sending.send(edition_date=NEXT, now=FIXED_NOW, clock=lambda: FIXED_NOW)
    app.editions.build(edition_date=date(2026, 11, 26), now=FIXED_NOW)  # a draft, not sent

    found = {item.placement.name: item for item in sponsors.report(app.database)}
    vaults = found["Example Vaults"]
    assert vaults.placement.id == placement.id
    assert [(e.edition_date, e.status.value, e.deliveries) for e in vaults.editions] == [
        (EDITION, "sent", 3),
        (NEXT, "sent", 5),
        (date(2026, 11, 26), "draft", 0),
    ]
    assert vaults.deliveries == 8
    assert (found["Desk"].editions, found["Desk"].deliveries) == ((), 0)


def test_the_cli_adds_lists_reports_and_removes(
    app_factory: Callable[..., App],
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = app_factory(database_url=database_url)
    monkeypatch.setenv("NEWSLETTER_CONFIG", "examples/demo.toml")
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", database_url)
    monkeypatch.setenv("NEWSLETTER_OUTBOX_DIR", str(tmp_path / "outbox"))
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str]:
        result = runner.invoke(cli, list(args), catch_exceptions=False)
        return result.exit_code, result.output

    add = ("sponsors", "add", "--name", "Example Vaults", "--url", URL, "--text", TEXT)
    code, output = run(*add, "--start", "2026-11-20", "--end", "2026-11-26")
    assert code == 0, output
    assert re.search(r"Added placement (\d+): Example Vaults, 2026-11-20 to 2026-11-26", output)
    code, output = run(*add, "--start", "2026-11-26", "--end", "2026-11-28")
    assert code == 2
    assert "overlap placement" in output and "one sponsored slot" in output
    code, output = run(*add, "--start", "2026-11-40", "--end", "2026-11-28")
    assert code == 2 and "is not a date" in output
    code, output = run(
        "sponsors",
        "add",
        "--name",
        "Desk",
        "--url",
        "https://desk.example.org/",
        "--text",
        "A desk.",
        "--start",
        "2026-12-01",
        "--end",
        "2026-12-02",
    )
    assert code == 0, output
    code, output = run("sponsors", "list")
    assert code == 0 and "Example Vaults" in output and "Desk" in output

    app.sources.fetch(now=FIXED_NOW)
    add_readers(app, 2)
    app.sending.send(edition_date=EDITION, now=FIXED_NOW, clock=lambda: FIXED_NOW)
    code, output = run("sponsors", "report")
    assert code == 0, output
    row = next(line for line in output.splitlines() if "Example Vaults" in line)
    assert "2026-11-24" in row and re.search(r"│\s*2\s*│", row) and "not counted" in row

    vaults, desk = (item.id for item in sponsors.placements(app.database))
    code, output = run("sponsors", "remove", str(vaults))
    assert code == 2 and "ran in 1 edition(s)" in output
    code, output = run("sponsors", "remove", str(desk))
    assert code == 0 and f"Removed placement {desk}" in output
    code, output = run("sponsors", "remove", str(desk))
    assert code == 2 and f"no sponsor placement {desk}" in output


def test_removing_a_placement_of_a_draft_says_to_rebuild_it(
    app_factory: Callable[..., App], sqlite_url: str
) -> None:
    app = app_factory(database_url=sqlite_url)
    placement = sponsors.add(app.database, app.settings, PLACEMENT, now=FIXED_NOW)
    app.sources.fetch(now=FIXED_NOW)
    app.editions.build(edition_date=EDITION, now=FIXED_NOW)
    removed = sponsors.remove(app.database, placement.id)
    assert removed.drafts == (EDITION,)
    app.editions.build(edition_date=EDITION, now=FIXED_NOW)
    html = app.editions.preview(edition_date=EDITION).read_text(encoding="utf-8")
    assert 'rel="sponsored"' not in html
    with pytest.raises(UnknownPlacement):
        sponsors.remove(app.database, placement.id)


def test_the_admin_api_adds_lists_reports_and_removes(
    web_factory: Callable[..., Web], database_url: str
) -> None:
    web = web_factory(database_url)
    auth = web.admin()
    new = {
        "name": "Example Vaults",
        "url": URL,
        "text": TEXT,
        "start_date": "2026-11-20",
        "end_date": "2026-11-26",
    }
    created = web.client.post("/api/sponsors", json=new, headers=auth)
    assert created.status_code == 201, created.text
    placement = created.json()
    assert placement["name"] == "Example Vaults" and placement["end_date"] == "2026-11-26"
    clash = web.client.post(
        "/api/sponsors",
        json={**new, "start_date": "2026-11-26", "end_date": "2026-11-30"},
        headers=auth,
    )
    assert clash.status_code == 409 and "overlap" in clash.json()["error"]
    bad = web.client.post(
        "/api/sponsors",
        json={
            **new,
            "url": "javascript:alert(1)",
            "start_date": "2027-01-01",
            "end_date": "2027-01-01",
        },
        headers=auth,
    )
    assert bad.status_code == 422 and "https" in bad.json()["error"]
    assert [item["id"] for item in web.client.get("/api/sponsors", headers=auth).json()] == [
        placement["id"]
    ]

    web.subscribed("reader@example.com")
    web.app.sources.fetch(now=FIXED_NOW)
    web.app.sending.send(edition_date=EDITION, now=FIXED_NOW)
    report = web.client.get("/api/sponsors/report", headers=auth).json()
    assert report[0]["placement"]["id"] == placement["id"]
    assert report[0]["editions"] == [
        {"edition_date": "2026-11-24", "status": "sent", "deliveries": 1, "clicks": 0}
    ]
    assert (report[0]["deliveries"], report[0]["clicks_counted"]) == (1, False)

    assert web.client.delete(f"/api/sponsors/{placement['id']}", headers=auth).status_code == 409
    assert web.client.delete("/api/sponsors/999", headers=auth).status_code == 404
    assert web.client.get("/api/sponsors").status_code == 401


def test_counted_clicks_go_through_a_signed_redirect_that_records_nothing_about_readers(
    web_factory: Callable[..., Web], database_url: str
) -> None:
    web = web_factory(database_url, sponsor_click_counts=True)
    placement = sponsors.add(web.app.database, web.app.settings, PLACEMENT, now=FIXED_NOW)
    web.subscribed("reader@example.com")
    web.app.sources.fetch(now=FIXED_NOW)
    web.app.sending.send(edition_date=EDITION, now=FIXED_NOW)

    mail = web.mails_to("reader@example.com")[-1]
    html = body(mail, "html")
    links = sponsor_links(html)
    prefix = f"{BASE_URL}/s/{placement.id}/{EDITION.isoformat()}?sig="
    assert links and all(link.startswith(prefix) for link in links)
    assert URL not in html  # the sponsor's address is only behind the redirect
    assert PRIVACY_COUNTED in html
    assert links[0] in body(mail, "plain")
    assert "reader" not in links[0]  # the same link for every reader
    page = web.client.get(f"/archive/{EDITION.isoformat()}")
    assert sponsor_links(page.text) == links

    path = links[0].removeprefix(BASE_URL)
    for _ in range(2):
        answer = web.client.get(path, follow_redirects=False)
        assert answer.status_code == 302
        assert answer.headers["location"] == URL
        assert answer.headers["cache-control"] == "no-store"
        assert "set-cookie" not in answer.headers
    signature = path.rpartition("=")[2]
    for forged in (
        f"/s/{placement.id}/{NEXT.isoformat()}?sig={signature}",  # another edition
        f"/s/{placement.id}/{EDITION.isoformat()}?sig={signature[:-2]}AA",
        f"/s/{placement.id}/{EDITION.isoformat()}",
        f"/s/{placement.id}/not-a-date?sig={signature}",
    ):
        answer = web.client.get(forged, follow_redirects=False)
        assert answer.status_code == 404, forged
        assert "location" not in answer.headers

    report = web.client.get("/api/sponsors/report", headers=web.admin()).json()
    assert report[0]["editions"][0]["clicks"] == 2 and report[0]["clicks"] == 2
    stored = inspect(web.app.database.engine).get_columns(SponsorClick.__tablename__)
    assert {column["name"] for column in stored} == {"placement_id", "edition_date", "clicks"}


def test_without_click_counts_a_printed_redirect_still_leads_to_the_sponsor_uncounted(
    web_factory: Callable[..., Web], sqlite_url: str
) -> None:
    counting = web_factory(sqlite_url, sponsor_click_counts=True)
    placement = sponsors.add(counting.app.database, counting.app.settings, PLACEMENT, now=FIXED_NOW)
    counting.app.sources.fetch(now=FIXED_NOW)
    counting.app.editions.build(edition_date=EDITION, now=FIXED_NOW)
    html = counting.app.editions.preview(edition_date=EDITION).read_text(encoding="utf-8")
    path = sponsor_links(html)[0].removeprefix(BASE_URL)

    plain = web_factory(sqlite_url)
    answer = plain.client.get(path, follow_redirects=False)
    assert (answer.status_code, answer.headers["location"]) == (302, URL)
    report = sponsors.report(plain.app.database)
    assert report[0].placement.id == placement.id and report[0].clicks == 0


def test_two_overlapping_placements_added_at_once_leave_one(
    app_factory: Callable[..., App], database_url: str
) -> None:
    apps = [app_factory(database_url=database_url) for _ in range(2)]
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def add(app: App, name: str) -> None:
        barrier.wait()
        try:
            sponsors.add(app.database, app.settings, replace(PLACEMENT, name=name), now=FIXED_NOW)
            outcomes.append("added")
        except PlacementConflict:
            outcomes.append("refused")

    threads = [
        threading.Thread(target=add, args=(app, f"Sponsor {n}")) for n, app in enumerate(apps)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["added", "refused"]
    assert len(sponsors.placements(apps[0].database)) == 1


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_counted_click_is_logged_like_any_other_request(
    app_factory: Callable[..., App], sqlite_url: str
) -> None:
    """The access log shows the click's request as it shows a page's; the app logs nothing more."""
    port = free_port()
    app = app_factory(
        database_url=sqlite_url, base_url=f"http://127.0.0.1:{port}", sponsor_click_counts=True
    )
    sponsors.add(app.database, app.settings, PLACEMENT, now=FIXED_NOW)
    add_readers(app, 1)
    app.sources.fetch(now=FIXED_NOW)
    app.sending.send(edition_date=EDITION, now=FIXED_NOW)
    server = serve(create_app(app), port)
    access, everything = Records(), Records()
    access_log = logging.getLogger("uvicorn.access")
    level = access_log.level
    access_log.addHandler(access)
    access_log.setLevel(logging.INFO)
    logging.getLogger().addHandler(everything)
    try:
        with httpx.Client(base_url=server.url) as client:
            html = client.get(f"/archive/{EDITION.isoformat()}").text
            (link,) = set(sponsor_links(html))
            before = len(everything.records)
            answer = client.get(link, follow_redirects=False)
            assert (answer.status_code, answer.headers["location"]) == (302, URL)
            clicked = everything.records[before:]
    finally:
        access_log.removeHandler(access)
        access_log.setLevel(level)
        logging.getLogger().removeHandler(everything)
        stop(server)
    page, click = access.records[-2:]
    assert isinstance(page.args, tuple) and isinstance(click.args, tuple)
    assert len(page.args) == len(click.args)  # client, method, path, HTTP version, status
    assert click.args[2] == link.removeprefix(server.url)
    assert "reader" not in click.getMessage()
    assert [record for record in clicked if record.name != "uvicorn.access"] == []
