"""The subscriber list: addresses, the state machine, adding, CSV import and export, signed tokens."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from newsletter.db import Database
from subscribers.addresses import normalise
from subscribers.errors import BadToken, IllegalTransition, ImportFileError, InvalidAddress
from subscribers.import_file import ImportRow, RejectedRow, read_csv
from subscribers.model import (
    Subscriber,
    SubscriberStatus,
    confirm,
    resubscribe,
    suppress,
    unsubscribe,
)
from subscribers.service import add_subscriber, get_by_email, iter_subscribers
from subscribers.tokens import PREFERENCES, UNSUBSCRIBE, TokenSigner
from subscribers.transfer import export_csv, import_rows

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NOW = datetime(2026, 11, 24, 6, 30, tzinfo=UTC)
LATER = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    database = Database.from_url(database_url)
    try:
        yield database
    finally:
        database.dispose()


def write_csv(path: Path, text: str, *, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def statuses(database: Database) -> dict[str, SubscriberStatus]:
    with database.transaction(readonly=True) as session:
        return {
            subscriber.email_key: subscriber.status
            for subscriber in session.scalars(select(Subscriber))
        }


# normalise


def test_normalise_lower_cases_the_domain_and_keeps_the_local_part_for_display() -> None:
    address = normalise("Alice.Smith@Example.COM")
    assert address.email == "Alice.Smith@example.com"
    assert address.key == "alice.smith@example.com"


def test_normalise_strips_surrounding_whitespace() -> None:
    assert normalise("  bob@example.org\t").email == "bob@example.org"


def test_an_internationalised_domain_and_its_punycode_share_a_key() -> None:
    unicode_form = normalise("user@bücher.example")
    punycode_form = normalise("user@xn--bcher-kva.example")
    shouted = normalise("USER@BÜCHER.EXAMPLE")
    assert unicode_form.key == punycode_form.key == shouted.key == "user@xn--bcher-kva.example"
    assert unicode_form.email == "user@bücher.example"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("no-at-sign.example.com", "must have an @-sign"),
        ("a b@example.com", "not a valid email address"),
        ("a@example.com\r\nBcc: x@y.z", "line break"),
        ("a@example.com\nBcc: x@y.z", "line break"),
        ("", "empty"),
        ("   ", "empty"),
        ("a@@example.com", "not a valid email address"),
        ("a@localhost", "not a valid email address"),
    ],
)
def test_invalid_addresses_are_refused_with_a_readable_message(raw: str, expected: str) -> None:
    with pytest.raises(InvalidAddress) as caught:
        normalise(raw)
    message = str(caught.value)
    assert expected in message
    # one line an operator can read, without a traceback-like dump
    assert "\n" not in message.replace("\\n", "")
    assert "\r" not in message


_ATOM = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_+-", min_size=1, max_size=12)
_LOCAL = st.lists(_ATOM, min_size=1, max_size=3).map(".".join)
_DOMAIN = st.sampled_from(["example.com", "Example.org", "mail.example.net", "bücher.example"])


@given(local=_LOCAL, domain=_DOMAIN)
def test_normalise_keys_ignore_case_and_email_is_idempotent(local: str, domain: str) -> None:
    raw = f"{local}@{domain}"
    address = normalise(raw)
    assert normalise(raw.upper()).key == address.key
    assert normalise(address.email) == address
    assert address.key == address.key.lower()


# the state machine


def make(status: SubscriberStatus) -> Subscriber:
    return Subscriber(
        email="carol@example.com",
        email_key="carol@example.com",
        status=status,
        created_at=NOW,
        status_changed_at=NOW,
    )


def test_confirm_moves_a_pending_subscriber_to_confirmed() -> None:
    subscriber = make(SubscriberStatus.PENDING)
    assert confirm(subscriber, now=LATER) is True
    assert subscriber.status is SubscriberStatus.CONFIRMED
    assert subscriber.confirmed_at == LATER
    assert subscriber.status_changed_at == LATER


def test_confirming_twice_is_a_no_op() -> None:
    subscriber = make(SubscriberStatus.PENDING)
    confirm(subscriber, now=NOW)
    assert confirm(subscriber, now=LATER) is False
    assert subscriber.status is SubscriberStatus.CONFIRMED
    assert subscriber.confirmed_at == NOW  # the first confirmation is kept


@pytest.mark.parametrize("start", [SubscriberStatus.CONFIRMED, SubscriberStatus.PENDING])
def test_unsubscribe_from_confirmed_or_pending(start: SubscriberStatus) -> None:
    subscriber = make(start)
    assert unsubscribe(subscriber, now=LATER, reason="link in mail") is True
    assert subscriber.status is SubscriberStatus.UNSUBSCRIBED
    assert subscriber.unsubscribed_at == LATER
    assert subscriber.status_reason == "link in mail"
    assert subscriber.is_suppressed


@pytest.mark.parametrize(
    "start",
    [SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED],
)
def test_unsubscribe_is_idempotent_for_suppressed_subscribers(start: SubscriberStatus) -> None:
    subscriber = make(start)
    assert unsubscribe(subscriber, now=LATER) is False
    assert subscriber.status is start
    assert subscriber.status_changed_at == NOW


@pytest.mark.parametrize("to", [SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED])
@pytest.mark.parametrize(
    "start",
    [SubscriberStatus.PENDING, SubscriberStatus.CONFIRMED, SubscriberStatus.UNSUBSCRIBED],
)
def test_suppress_to_bounced_or_complained(start: SubscriberStatus, to: SubscriberStatus) -> None:
    subscriber = make(start)
    assert suppress(subscriber, to, reason="550 5.1.1 user unknown", now=LATER) is True
    assert subscriber.status is to
    assert subscriber.status_reason == "550 5.1.1 user unknown"
    assert subscriber.is_suppressed


def test_suppressing_twice_with_the_same_status_is_a_no_op() -> None:
    subscriber = make(SubscriberStatus.BOUNCED)
    assert suppress(subscriber, SubscriberStatus.BOUNCED, reason="again", now=LATER) is False
    assert subscriber.status_changed_at == NOW


@pytest.mark.parametrize(
    "status", [SubscriberStatus.CONFIRMED, SubscriberStatus.PENDING, SubscriberStatus.UNSUBSCRIBED]
)
def test_suppress_refuses_a_status_that_is_not_a_suppression(status: SubscriberStatus) -> None:
    subscriber = make(SubscriberStatus.PENDING)
    with pytest.raises(IllegalTransition, match="not a suppression status"):
        suppress(subscriber, status, reason="x")
    assert subscriber.status is SubscriberStatus.PENDING


def test_resubscribe_brings_an_unsubscribed_subscriber_back_to_pending() -> None:
    subscriber = make(SubscriberStatus.CONFIRMED)
    subscriber.confirmed_at = NOW
    unsubscribe(subscriber, now=NOW)
    resubscribe(subscriber, now=LATER)
    assert subscriber.status is SubscriberStatus.PENDING
    assert subscriber.confirmed_at is None
    assert subscriber.unsubscribed_at is None
    # and they have to confirm again
    assert confirm(subscriber, now=LATER) is True


@pytest.mark.parametrize(
    "start",
    [
        SubscriberStatus.PENDING,
        SubscriberStatus.CONFIRMED,
        SubscriberStatus.BOUNCED,
        SubscriberStatus.COMPLAINED,
    ],
)
def test_resubscribe_only_from_unsubscribed(start: SubscriberStatus) -> None:
    subscriber = make(start)
    with pytest.raises(IllegalTransition, match=f"is {start.value}"):
        resubscribe(subscriber)
    assert subscriber.status is start


@pytest.mark.parametrize(
    "start",
    [SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED],
)
def test_a_suppressed_subscriber_cannot_be_confirmed(start: SubscriberStatus) -> None:
    subscriber = make(start)
    with pytest.raises(IllegalTransition) as caught:
        confirm(subscriber)
    assert "carol@example.com" in str(caught.value)
    assert "cannot become confirmed" in str(caught.value)
    assert subscriber.status is start
    assert subscriber.confirmed_at is None


def test_a_complaint_is_never_downgraded_to_a_bounce() -> None:
    subscriber = make(SubscriberStatus.COMPLAINED)
    with pytest.raises(IllegalTransition):
        suppress(subscriber, SubscriberStatus.BOUNCED, reason="later bounce")
    assert subscriber.status is SubscriberStatus.COMPLAINED


# add_subscriber, on both databases


def test_add_subscriber_creates_once_and_is_case_insensitive(database: Database) -> None:
    with database.transaction() as session:
        first, created = add_subscriber(session, "Alice@Example.com", name="Alice", now=NOW)
        assert created is True
        assert first.status is SubscriberStatus.PENDING
        assert first.confirmed_at is None
        assert first.consent_at == NOW
    with database.transaction() as session:
        again, created = add_subscriber(session, "alice@example.com", name="Someone else")
        assert created is False
        assert again.id == first.id
        assert again.email == "Alice@example.com"
        assert again.name == "Alice"
    with database.transaction(readonly=True) as session:
        assert len(session.scalars(select(Subscriber)).all()) == 1
        assert get_by_email(session, "ALICE@EXAMPLE.COM").id == first.id


def test_add_subscriber_confirmed_sets_confirmation_time(database: Database) -> None:
    with database.transaction() as session:
        _, created = add_subscriber(
            session, "dan@example.net", timezone="Europe/Berlin", confirmed=True, now=NOW
        )
    assert created
    with database.transaction(readonly=True) as session:
        stored = get_by_email(session, "dan@example.net")
        assert stored.status is SubscriberStatus.CONFIRMED
        assert stored.confirmed_at == NOW
        assert stored.timezone == "Europe/Berlin"


def test_add_subscriber_does_not_reactivate_an_unsubscribed_address(database: Database) -> None:
    with database.transaction() as session:
        subscriber, _ = add_subscriber(session, "eve@example.org", confirmed=True, now=NOW)
        unsubscribe(subscriber, now=NOW)
    with database.transaction() as session:
        again, created = add_subscriber(session, "EVE@example.org", confirmed=True, now=LATER)
        assert created is False
        assert again.status is SubscriberStatus.UNSUBSCRIBED
    assert statuses(database) == {"eve@example.org": SubscriberStatus.UNSUBSCRIBED}


def test_add_subscriber_refuses_an_invalid_address_and_stores_nothing(database: Database) -> None:
    with pytest.raises(InvalidAddress), database.transaction() as session:
        add_subscriber(session, "a@example.com\r\nBcc: x@y.z")
    assert statuses(database) == {}


# CSV import, on both databases


def test_import_keeps_good_rows_and_reports_each_bad_one_by_line(
    database: Database, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "mixed.csv",
        "email,name,timezone\n"  # 1
        "ann@example.com,Ann,Europe/Berlin\n"  # 2
        "not-an-address,Bad,UTC\n"  # 3
        "bob@example.org,Bob,Mars/Olympus\n"  # 4
        "\n"  # 5 (blank lines are skipped but still counted)
        "carol@example.net,Carol\n"  # 6
        "ANN@Example.com,Ann again,UTC\n"  # 7
        ",Nobody,UTC\n"  # 8
        "dave@example.com,Dave,\n",  # 9
    )
    report = import_rows(database.transaction, read_csv(path), confirmed=False, source="test")
    assert report.added == 2
    assert report.already_present == 0
    assert report.suppressed == 0
    rejected = [(row.line, row.value) for row in report.rejected]
    assert rejected == [
        (3, "not-an-address"),
        (4, "bob@example.org"),
        (6, "carol@example.net"),
        (7, "ANN@Example.com"),
        (8, ""),
    ]
    reasons = {row.line: row.reason for row in report.rejected}
    assert "not a valid email address" in reasons[3]
    assert reasons[4] == "unknown time zone 'Mars/Olympus'"
    assert reasons[6] == "has 2 fields where the header has 3"
    assert reasons[7] == "duplicate of line 2"
    assert reasons[8] == "the email address is empty"
    assert statuses(database) == {
        "ann@example.com": SubscriberStatus.PENDING,
        "dave@example.com": SubscriberStatus.PENDING,
    }
    with database.transaction(readonly=True) as session:
        ann = get_by_email(session, "ann@example.com")
        assert (ann.name, ann.timezone, ann.consent_source) == ("Ann", "Europe/Berlin", "test")
        dave = get_by_email(session, "dave@example.com")
        assert dave.timezone is None


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("name,timezone\nAnn,UTC\n", "has no 'email' column"),
        ("", "is empty"),
    ],
)
def test_unusable_import_files_are_refused(tmp_path: Path, content: str, expected: str) -> None:
    path = write_csv(tmp_path / "bad.csv", content)
    with pytest.raises(ImportFileError, match=expected):
        list(read_csv(path))


def test_a_non_utf8_import_file_is_refused_with_a_hint(database: Database, tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "latin1.csv", "email,name\nzoe@example.org,Zoë Müller\n", encoding="latin-1"
    )
    with pytest.raises(ImportFileError) as caught:
        import_rows(database.transaction, read_csv(path), confirmed=False, source="test")
    assert "not UTF-8" in str(caught.value)
    assert "CSV UTF-8" in str(caught.value)  # the hint says how to fix it
    assert statuses(database) == {}


def test_a_non_utf8_byte_late_in_a_large_file_imports_nothing(
    database: Database, tmp_path: Path
) -> None:
    lines = [f"user{n}@example.com,User {n}" for n in range(600)]
    path = write_csv(
        tmp_path / "late.csv",
        "email,name\n" + "\n".join(lines) + "\nzoe@example.org,Zoë\n",
        encoding="latin-1",
    )
    with pytest.raises(ImportFileError, match="not UTF-8"):
        import_rows(
            database.transaction, read_csv(path), confirmed=False, source="t", chunk_size=100
        )
    assert statuses(database) == {}


def test_a_missing_or_unreadable_import_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ImportFileError, match="does not exist"):
        list(read_csv(tmp_path / "nope.csv"))
    with pytest.raises(ImportFileError, match="is a directory"):
        list(read_csv(tmp_path))


def test_a_bom_and_loose_header_are_accepted(database: Database, tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(
        b"\xef\xbb\xbf"
        + "Email , Name , TimeZone\nzoe@example.org,Zoë Müller,Europe/Berlin\n".encode()
    )
    rows = list(read_csv(path))
    assert rows == [
        ImportRow(2, "zoe@example.org", "zoe@example.org", "Zoë Müller", "Europe/Berlin")
    ]
    report = import_rows(database.transaction, rows, confirmed=False, source="test")
    assert report.added == 1
    with database.transaction(readonly=True) as session:
        assert get_by_email(session, "zoe@example.org").name == "Zoë Müller"


def test_importing_the_same_file_twice_adds_nothing_new(database: Database) -> None:
    path = EXAMPLES / "subscribers.csv"
    first = import_rows(database.transaction, read_csv(path), confirmed=True, source="demo")
    assert (first.added, first.already_present, first.suppressed, first.rejected) == (24, 0, 0, [])
    second = import_rows(database.transaction, read_csv(path), confirmed=True, source="demo")
    assert (second.added, second.already_present, second.suppressed) == (0, 24, 0)
    assert second.rejected == []
    assert len(statuses(database)) == 24


def test_suppressed_addresses_stay_suppressed_after_reimport(
    database: Database, tmp_path: Path
) -> None:
    with database.transaction() as session:
        left, _ = add_subscriber(session, "left@example.com", confirmed=True, now=NOW)
        unsubscribe(left, now=NOW)
        bounced, _ = add_subscriber(session, "bounced@example.com", confirmed=True, now=NOW)
        suppress(bounced, SubscriberStatus.BOUNCED, reason="550 user unknown", now=NOW)
        add_subscriber(session, "stays@example.com", confirmed=True, now=NOW)
    path = write_csv(
        tmp_path / "again.csv",
        "email\nLeft@Example.com\nbounced@example.com\nstays@example.com\nnew@example.com\n",
    )
    report = import_rows(database.transaction, read_csv(path), confirmed=True, source="test")
    assert (report.added, report.already_present, report.suppressed) == (1, 1, 2)
    assert statuses(database) == {
        "left@example.com": SubscriberStatus.UNSUBSCRIBED,
        "bounced@example.com": SubscriberStatus.BOUNCED,
        "stays@example.com": SubscriberStatus.CONFIRMED,
        "new@example.com": SubscriberStatus.CONFIRMED,
    }


@pytest.mark.parametrize("confirmed", [True, False])
def test_import_confirmed_flag(database: Database, tmp_path: Path, confirmed: bool) -> None:
    path = write_csv(tmp_path / "two.csv", "email\nann@example.com\nbob@example.com\n")
    import_rows(database.transaction, read_csv(path), confirmed=confirmed, source="t", now=NOW)
    with database.transaction(readonly=True) as session:
        subscribers = session.scalars(select(Subscriber)).all()
    assert len(subscribers) == 2
    for subscriber in subscribers:
        if confirmed:
            assert subscriber.status is SubscriberStatus.CONFIRMED
            assert subscriber.confirmed_at == NOW
        else:
            assert subscriber.status is SubscriberStatus.PENDING
            assert subscriber.confirmed_at is None
        assert subscriber.consent_at == NOW


def test_import_in_chunks_reports_progress_for_every_row(
    database: Database, tmp_path: Path
) -> None:
    lines = [f"user{n}@example.com,User {n}" for n in range(10)]
    lines.insert(4, "broken,Broken")
    path = write_csv(tmp_path / "eleven.csv", "email,name\n" + "\n".join(lines) + "\n")
    calls: list[int] = []
    report = import_rows(
        database.transaction,
        read_csv(path),
        confirmed=False,
        source="test",
        chunk_size=3,
        progress=calls.append,
    )
    assert sum(calls) == 11  # every data row, good or bad
    assert max(calls) <= 3
    assert report.added == 10
    assert [row.line for row in report.rejected] == [6]
    assert sorted(statuses(database)) == sorted(f"user{n}@example.com" for n in range(10))


def test_import_counts_an_address_on_the_list_as_present_and_leaves_it(database: Database) -> None:
    with database.transaction() as session:
        add_subscriber(session, "race@example.com", now=NOW)
    rows: list[ImportRow | RejectedRow] = [
        ImportRow(2, "race@example.com", "race@example.com", None, None),
        ImportRow(3, "fresh@example.com", "fresh@example.com", None, None),
    ]
    report = import_rows(database.transaction, rows, confirmed=True, source="test")
    assert (report.added, report.already_present) == (1, 1)
    assert statuses(database)["race@example.com"] is SubscriberStatus.PENDING


# export


def test_export_then_read_back_gives_the_same_subscribers(
    database: Database, tmp_path: Path
) -> None:
    source = EXAMPLES / "subscribers.csv"
    import_rows(database.transaction, read_csv(source), confirmed=True, source="demo")
    out = io.StringIO()
    with database.transaction(readonly=True) as session:
        written = export_csv(iter_subscribers(session), out)
    assert written == 24
    exported = write_csv(tmp_path / "export.csv", out.getvalue())
    back = list(read_csv(exported))
    original = list(read_csv(source))
    assert all(isinstance(row, ImportRow) for row in back)
    assert {(r.email, r.name, r.timezone) for r in back} == {
        (r.email, r.name, r.timezone) for r in original
    }
    header = next(csv.reader(io.StringIO(out.getvalue())))
    assert header == ["email", "name", "status", "timezone", "created_at", "confirmed_at"]
    # importing the export into the same list adds nothing
    again = import_rows(database.transaction, back, confirmed=True, source="export")
    assert (again.added, again.already_present) == (0, 24)


@pytest.mark.parametrize("name", ['=HYPERLINK("http://evil.example")', "+1+2", "-3", "@SUM(A1)"])
def test_export_defuses_spreadsheet_formulas_in_names(database: Database, name: str) -> None:
    with database.transaction() as session:
        add_subscriber(session, "mallory@example.com", name=name, now=NOW)
    out = io.StringIO()
    with database.transaction(readonly=True) as session:
        export_csv(iter_subscribers(session), out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert rows[0]["email"] == "mallory@example.com"
    assert rows[0]["name"] == "'" + name
    assert rows[0]["status"] == "pending"


# tokens


def test_token_round_trip_per_purpose() -> None:
    signer = TokenSigner("s3cret-key")
    for purpose in (UNSUBSCRIBE, PREFERENCES):
        assert signer.verify(signer.sign(42, purpose), purpose) == 42
    assert signer.verify_confirmation(signer.sign_confirmation(7), max_age_seconds=3600) == 7


def test_a_token_for_one_purpose_is_refused_for_another() -> None:
    signer = TokenSigner("s3cret-key")
    with pytest.raises(BadToken, match="not valid"):
        signer.verify(signer.sign(42, UNSUBSCRIBE), PREFERENCES)
    with pytest.raises(BadToken):
        signer.verify(signer.sign(42, PREFERENCES), UNSUBSCRIBE)
    with pytest.raises(BadToken):
        signer.verify_confirmation(signer.sign(42, UNSUBSCRIBE), max_age_seconds=3600)
    with pytest.raises(BadToken):
        signer.verify(signer.sign_confirmation(42), UNSUBSCRIBE)


def test_a_tampered_or_foreign_token_is_refused() -> None:
    signer = TokenSigner("s3cret-key")
    token = signer.sign(42, UNSUBSCRIBE)
    payload, signature = token.rsplit(".", 1)
    forged = signer.sign(43, UNSUBSCRIBE).rsplit(".", 1)[0] + "." + signature
    flipped = payload + "." + ("A" if signature[0] != "A" else "B") + signature[1:]
    for bad in (forged, flipped, token[:-3], "", "garbage"):
        with pytest.raises(BadToken):
            signer.verify(bad, UNSUBSCRIBE)
    other = TokenSigner("another-key")
    with pytest.raises(BadToken):
        signer.verify(other.sign(42, UNSUBSCRIBE), UNSUBSCRIBE)
    with pytest.raises(BadToken):
        signer.verify_confirmation(other.sign_confirmation(42), max_age_seconds=3600)


def test_an_expired_confirmation_token_is_refused_with_a_hint() -> None:
    signer = TokenSigner("s3cret-key")
    token = signer.sign_confirmation(42)
    with pytest.raises(BadToken) as caught:
        signer.verify_confirmation(token, max_age_seconds=-1)
    assert "expired" in str(caught.value)
    assert caught.value.hint == "subscribe again to get a new one"
