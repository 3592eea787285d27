"""Coming over with a list: the subscriber exports of Mailchimp, Substack, beehiiv, listmonk and
Buttondown import with their status kept, on SQLite and PostgreSQL, from the CLI and the admin API.

The sample files in ``tests/data/imports/`` follow each provider's documented export columns (see
the README there). Who left, bounced or complained there is suppressed here and can never be
confirmed by an operator; a re-import of the same file changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from newsletter.cli import cli
from newsletter.db import Database
from subscribers.errors import ImportFileError, SuppressedAddress
from subscribers.formats import ImportFormat
from subscribers.import_file import read_csv
from subscribers.model import ConsentEvent, Subscriber, SubscriberStatus, Suppression
from subscribers.privacy import address_hash
from subscribers.service import add_subscriber
from subscribers.transfer import ImportReport, import_rows
from tests.web_fixtures import Web, web_db, web_factory

__all__ = ["web_db", "web_factory"]

DATA = Path(__file__).resolve().parent / "data" / "imports"
NOW = datetime(2026, 11, 24, 6, 30, tzinfo=UTC)
LATER = datetime(2026, 11, 25, 6, 30, tzinfo=UTC)

#: Each sample file: the format auto must find, then the outcome expected for each address.
SAMPLES: dict[str, tuple[ImportFormat, dict[str, str]]] = {
    "mailchimp_subscribed_members_export.csv": (
        ImportFormat.MAILCHIMP,
        {"ada@example.com": "confirmed", "grace@example.org": "confirmed"},
    ),
    "mailchimp_unsubscribed_members_export.csv": (
        ImportFormat.MAILCHIMP,
        {"left@example.com": "suppressed", "spam@example.net": "suppressed"},
    ),
    "mailchimp_cleaned_members_export.csv": (
        ImportFormat.MAILCHIMP,
        {"gone@example.com": "suppressed"},
    ),
    "substack_email_list.csv": (
        ImportFormat.SUBSTACK,
        {
            "reader@example.com": "confirmed",
            "paying@example.org": "confirmed",
            "quiet@example.net": "suppressed",
        },
    ),
    "beehiiv_subscribers.csv": (
        ImportFormat.BEEHIIV,
        {
            "active@example.com": "confirmed",
            "waiting@example.com": "pending",
            "inactive@example.org": "suppressed",
            "invalid@example.net": "suppressed",
        },
    ),
    "listmonk_subscribers.csv": (
        ImportFormat.LISTMONK,
        {
            "kim@example.com": "confirmed",
            "blocked@example.org": "suppressed",
            "paused@example.net": "pending",
        },
    ),
    "buttondown_subscribers.csv": (
        ImportFormat.BUTTONDOWN,
        {
            "fan@example.com": "confirmed",
            "premium@example.org": "confirmed",
            "unconfirmed@example.net": "pending",
            "bye@example.com": "suppressed",
            "bot@example.com": "suppressed",
        },
    ),
}


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    database = Database.from_url(database_url)
    try:
        yield database
    finally:
        database.dispose()


def run_import(
    database: Database,
    name: str,
    *,
    chosen: ImportFormat = ImportFormat.AUTO,
    now: datetime = NOW,
) -> ImportReport:
    return import_rows(
        database.transaction,
        read_csv(DATA / name, source_format=chosen),
        confirmed=False,
        source=f"import:{name}",
        now=now,
    )


def snapshot(database: Database) -> dict[str, Any]:
    """Everything an import may write: subscribers, consent events, suppressions."""
    with database.transaction(readonly=True) as session:
        return {
            "subscribers": [
                row.as_dict() for row in session.scalars(select(Subscriber).order_by(Subscriber.id))
            ],
            "consent": [
                (event.subscriber_id, *event.as_dict().values())
                for event in session.scalars(select(ConsentEvent).order_by(ConsentEvent.id))
            ],
            "suppressions": sorted(
                (row.email_hash, row.reason) for row in session.scalars(select(Suppression))
            ),
        }


def outcome(database: Database, address: str) -> str:
    """confirmed / pending / suppressed (by hash, or a suppressed status) / absent."""
    with database.transaction(readonly=True) as session:
        row = session.scalar(select(Subscriber).where(Subscriber.email_key == address))
        if row is not None:
            return "suppressed" if row.is_suppressed else row.status.value
        if session.get(Suppression, address_hash(address)) is not None:
            return "suppressed"
    return "absent"


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_each_provider_export_imports_with_its_status_kept_and_a_reimport_changes_nothing(
    database: Database, name: str
) -> None:
    expected_format, expected = SAMPLES[name]
    first = run_import(database, name)
    assert first.format == expected_format.value
    assert {address: outcome(database, address) for address in expected} == expected
    counts = list(expected.values())
    assert (first.confirmed, first.pending, first.newly_suppressed) == (
        counts.count("confirmed"),
        counts.count("pending"),
        counts.count("suppressed"),
    )
    assert first.unchanged == 0
    before = snapshot(database)

    second = run_import(database, name, now=LATER)
    assert (second.added, second.newly_suppressed) == (0, 0)
    assert second.unchanged == len(expected)
    assert [(row.line, row.reason) for row in second.rejected] == [
        (row.line, row.reason) for row in first.rejected
    ]
    assert snapshot(database) == before  # no new row, no new consent event, nothing moved


def test_the_chosen_format_reads_the_same_as_auto(database: Database) -> None:
    report = run_import(database, "beehiiv_subscribers.csv", chosen=ImportFormat.BEEHIIV)
    assert (report.format, report.confirmed, report.pending, report.newly_suppressed) == (
        "beehiiv",
        1,
        1,
        2,
    )


def test_mailchimp_keeps_names_time_zones_consent_time_source_and_ip(database: Database) -> None:
    report = run_import(database, "mailchimp_subscribed_members_export.csv")
    assert [(row.line, row.value) for row in report.rejected] == [(4, "no-at-sign.example.com")]
    assert "not a valid email address" in report.rejected[0].reason
    with database.transaction(readonly=True) as session:
        ada = session.scalar(select(Subscriber).where(Subscriber.email_key == "ada@example.com"))
        assert ada is not None
        assert (ada.name, ada.timezone, ada.status) == (
            "Ada Lovelace",
            "Europe/London",
            SubscriberStatus.CONFIRMED,
        )
        assert ada.consent_at == datetime(2023, 1, 10, 8, 15, 2, tzinfo=UTC)
        assert ada.confirmed_at == datetime(2023, 1, 10, 8, 16, 40, tzinfo=UTC)
        assert ada.consent_source == "import:mailchimp_subscribed_members_export.csv (mailchimp)"
        assert ada.consent_ip == "203.0.113.7"
        events = session.scalars(
            select(ConsentEvent).where(ConsentEvent.subscriber_id == ada.id)
        ).all()
        assert [(e.kind, e.at, e.source, e.ip) for e in events] == [
            (
                "imported",
                datetime(2023, 1, 10, 8, 15, 2, tzinfo=UTC),
                "import:mailchimp_subscribed_members_export.csv (mailchimp)",
                "203.0.113.7",
            )
        ]


def test_beehiiv_keeps_the_utm_source_and_listmonk_the_time_zone_of_its_attributes(
    database: Database,
) -> None:
    run_import(database, "beehiiv_subscribers.csv")
    run_import(database, "listmonk_subscribers.csv")
    with database.transaction(readonly=True) as session:
        active = session.scalar(
            select(Subscriber).where(Subscriber.email_key == "active@example.com")
        )
        kim = session.scalar(select(Subscriber).where(Subscriber.email_key == "kim@example.com"))
        assert active is not None and kim is not None
        assert active.consent_source is not None and "utm_source=twitter" in active.consent_source
        assert active.consent_at == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
        assert (kim.name, kim.timezone) == ("Kim Lee", "Asia/Seoul")
        assert kim.consent_at == datetime(2024, 3, 1, 9, 30, tzinfo=UTC)


def test_unknown_statuses_are_rejected_with_their_line_and_reason(database: Database) -> None:
    report = run_import(database, "beehiiv_subscribers.csv")
    assert [(row.line, row.value) for row in report.rejected] == [(6, "odd@example.com")]
    assert report.rejected[0].reason.startswith("unknown beehiiv status 'frozen' (known: active")
    assert outcome(database, "odd@example.com") == "absent"


def test_a_suppressed_import_can_never_be_confirmed_by_an_operator(
    database: Database, tmp_path: Path
) -> None:
    run_import(database, "mailchimp_unsubscribed_members_export.csv")
    run_import(database, "mailchimp_cleaned_members_export.csv")
    for address in ("left@example.com", "spam@example.net", "gone@example.com"):
        with pytest.raises(SuppressedAddress), database.transaction() as session:
            add_subscriber(session, address, confirmed=True, now=LATER)
    # nor by a plain CSV import as confirmed
    plain = tmp_path / "plain.csv"
    plain.write_text("email\nleft@example.com\ngone@example.com\n", encoding="utf-8")
    report = import_rows(
        database.transaction,
        read_csv(plain, source_format=ImportFormat.CSV),
        confirmed=True,
        source="again",
        now=LATER,
    )
    assert (report.added, report.suppressed) == (0, 2)
    assert outcome(database, "left@example.com") == "suppressed"


def test_a_subscriber_on_the_list_who_left_there_afterwards_is_suppressed_here(
    database: Database,
) -> None:
    with database.transaction() as session:
        add_subscriber(
            session, "left@example.com", confirmed=True, now=datetime(2023, 1, 1, tzinfo=UTC)
        )
        # subscribed here after leaving Mailchimp (2024-03-03): that newer consent stands
        add_subscriber(
            session, "spam@example.net", confirmed=True, now=datetime(2024, 6, 1, tzinfo=UTC)
        )
    report = run_import(database, "mailchimp_unsubscribed_members_export.csv")
    assert (report.newly_suppressed, report.already_present) == (1, 1)
    with database.transaction(readonly=True) as session:
        left = session.scalar(select(Subscriber).where(Subscriber.email_key == "left@example.com"))
        assert left is not None and left.status is SubscriberStatus.UNSUBSCRIBED
        kinds = session.scalars(
            select(ConsentEvent.kind).where(ConsentEvent.subscriber_id == left.id)
        ).all()
        assert list(kinds) == ["added", "unsubscribe"]
    assert outcome(database, "spam@example.net") == "confirmed"
    again = run_import(database, "mailchimp_unsubscribed_members_export.csv", now=LATER)
    assert (again.newly_suppressed, again.unchanged) == (0, 2)


def test_auto_reads_this_newsletters_own_csv_as_before(database: Database, tmp_path: Path) -> None:
    own = tmp_path / "export.csv"
    own.write_text(
        "email,name,status,timezone,created_at,confirmed_at\n"
        "one@example.com,One,confirmed,UTC,2026-01-01T00:00:00+00:00,\n"
        "two@example.com,Two,unsubscribed,,2026-01-01T00:00:00+00:00,\n",
        encoding="utf-8",
    )
    report = import_rows(database.transaction, read_csv(own), confirmed=True, source="own", now=NOW)
    assert report.format == "csv"
    assert (report.confirmed, report.newly_suppressed) == (1, 1)
    assert outcome(database, "two@example.com") == "suppressed"


def test_a_file_that_is_not_the_chosen_providers_export_is_refused_whole(
    database: Database,
) -> None:
    with pytest.raises(ImportFileError) as caught:
        run_import(database, "substack_email_list.csv", chosen=ImportFormat.LISTMONK)
    assert "is not a listmonk export: it has no status, attributes column" in caught.value.message
    assert "nothing was imported" in caught.value.message
    assert caught.value.hint is not None and "--from" in caught.value.hint
    assert snapshot(database)["subscribers"] == []


def _env(web: Web) -> dict[str, str]:
    settings = web.app.settings
    return {
        "NEWSLETTER_CONFIG": "examples/demo.toml",
        "NEWSLETTER_DATABASE_URL": settings.database_url,
        "NEWSLETTER_OUTBOX_DIR": str(settings.outbox_dir),
    }


def test_cli_imports_a_mailchimp_export_and_says_what_happened(web_db: Web) -> None:
    web = web_db
    runner = CliRunner()
    files = [DATA / name for name in sorted(SAMPLES) if name.startswith("mailchimp")]
    outputs = []
    for path in files:
        result = runner.invoke(
            cli, ["subscribers", "import", str(path), "--from", "mailchimp"], env=_env(web)
        )
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    assert all("Import summary (mailchimp)" in output for output in outputs)
    assert "line 4: no-at-sign.example.com:" in outputs[1]  # the subscribed file
    listed = runner.invoke(cli, ["subscribers", "list"], env=_env(web))
    assert sorted(line.split("\t")[0] for line in listed.stdout.splitlines()) == [
        "ada@example.com",
        "grace@example.org",
    ]
    again = runner.invoke(
        cli, ["subscribers", "import", str(files[0]), "--from", "mailchimp"], env=_env(web)
    )
    assert "unchanged" in again.output
    wrong = runner.invoke(
        cli, ["subscribers", "import", str(files[0]), "--from", "listmonk"], env=_env(web)
    )
    assert wrong.exit_code == 2
    assert "is not a listmonk export" in wrong.output


def test_api_imports_with_the_from_parameter_and_reports_each_outcome(web_db: Web) -> None:
    web = web_db
    path = DATA / "buttondown_subscribers.csv"

    def post(query: str) -> Any:
        return web.client.post(
            f"/api/subscribers/import{query}",
            headers=web.admin(),
            files={"file": (path.name, path.read_bytes(), "text/csv")},
        )

    first = post("?from=buttondown")
    assert first.status_code == 200, first.text
    body = first.json()
    assert (body["format"], body["confirmed"], body["pending"], body["newly_suppressed"]) == (
        "buttondown",
        2,
        1,
        2,
    )
    assert (body["added"], body["unchanged"], body["rejected"]) == (3, 0, [])
    again = post("").json()  # auto
    assert (again["format"], again["added"], again["newly_suppressed"], again["unchanged"]) == (
        "buttondown",
        0,
        0,
        5,
    )
    refused = post("?from=mailchimp")
    assert refused.status_code == 422
    assert "is not a mailchimp export" in refused.json()["error"]
    assert post("?from=hotmail").status_code == 422
    subscriber = web.subscriber("fan@example.com")
    assert subscriber is not None and subscriber.status is SubscriberStatus.CONFIRMED
    parameters = web.client.get("/api/openapi.json").json()["paths"]["/api/subscribers/import"][
        "post"
    ]["parameters"]
    assert "from" in {parameter["name"] for parameter in parameters}
