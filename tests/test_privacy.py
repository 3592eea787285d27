"""GDPR export and erasure, suppression that survives deletion, the signup service, confirmation tokens."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import inspect, select, text

from newsletter.db import Database
from subscribers import privacy, signup
from subscribers.errors import BadToken, SuppressedAddress
from subscribers.import_file import read_csv
from subscribers.model import Subscriber, SubscriberStatus, Suppression
from subscribers.service import add_subscriber
from subscribers.tokens import TokenSigner
from subscribers.transfer import import_rows
from tests.conftest import FIXED_NOW
from tests.web_fixtures import ADMIN_TOKEN, Web, web, web_db, web_factory

__all__ = ["web", "web_db", "web_factory"]

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CONSENT = signup.Consent(
    at=FIXED_NOW, ip="198.51.100.7", user_agent="Firefox", source="web:test", wording="v1"
)


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = Database.from_url(database_url)
    yield db
    db.dispose()


def statuses(database: Database) -> dict[str, SubscriberStatus]:
    with database.transaction(readonly=True) as session:
        return dict(session.execute(select(Subscriber.email, Subscriber.status)).all())  # type: ignore[arg-type]


def import_text(database: Database, tmp_path: Path, body: str) -> tuple[int, int, int]:
    path = tmp_path / "import.csv"
    path.write_text(body, encoding="utf-8")
    report = import_rows(database.transaction, read_csv(path), confirmed=True, source="t")
    return report.added, report.already_present, report.suppressed


# the signup service


def test_signup_outcomes_follow_the_state_machine(database: Database) -> None:
    with database.transaction() as session:
        first = signup.request(session, "Ann@Example.com", consent=CONSENT, timezone="Asia/Tokyo")
        again = signup.request(session, "ann@example.com", consent=CONSENT)
    assert (first.outcome, again.outcome) == (signup.Signup.NEW, signup.Signup.PENDING)
    assert first.nonce == again.nonce  # every mail of one pending period carries the same nonce
    with database.transaction() as session:
        done = signup.confirm(
            session,
            first.subscriber_id,
            nonce=first.nonce,
            ip="203.0.113.1",
            user_agent="UA",
            now=FIXED_NOW,
        )
        assert done.outcome is signup.Confirmation.CONFIRMED
        assert (
            signup.request(session, "ann@example.com", consent=CONSENT).outcome
            is signup.Signup.ALREADY
        )
        assert (
            signup.leave(session, first.subscriber_id, now=FIXED_NOW).outcome
            is signup.Leave.UNSUBSCRIBED
        )
        assert (
            signup.leave(session, first.subscriber_id, now=FIXED_NOW).outcome
            is signup.Leave.ALREADY
        )
        back = signup.request(session, "ann@example.com", consent=CONSENT)
        assert back.outcome is signup.Signup.RESUBSCRIBED and back.nonce != first.nonce
        stale = signup.confirm(
            session, first.subscriber_id, nonce=first.nonce, ip=None, user_agent=None, now=FIXED_NOW
        )
        assert stale.outcome is signup.Confirmation.STALE
        subscriber = session.get_one(Subscriber, first.subscriber_id)
        subscriber.status = SubscriberStatus.COMPLAINED
        assert (
            signup.request(session, "ann@example.com", consent=CONSENT).outcome
            is signup.Signup.BLOCKED
        )
        assert (
            signup.rejoin(session, first.subscriber_id, consent=CONSENT).outcome
            is signup.Rejoin.BLOCKED
        )
    with database.transaction(readonly=True) as session:
        stored = session.get_one(Subscriber, first.subscriber_id)
        assert stored.timezone == "Asia/Tokyo"
        assert (stored.consent_ip, stored.consent_user_agent, stored.consent_wording) == (
            "198.51.100.7",
            "Firefox",
            "v1",
        )
        assert stored.confirmed_ip == "203.0.113.1"


def test_signup_ignores_an_unknown_browser_time_zone(database: Database) -> None:
    with database.transaction() as session:
        result = signup.request(session, "tz@example.com", consent=CONSENT, timezone="Not/AZone")
        assert session.get_one(Subscriber, result.subscriber_id).timezone is None


# confirmation tokens


def test_confirmation_tokens_carry_the_nonce_and_expire_by_the_given_clock() -> None:
    signer = TokenSigner("s3cret")
    token = signer.sign_confirmation(5, nonce="abc", now=FIXED_NOW)
    claim = signer.read_confirmation(
        token, max_age_seconds=3600, now=FIXED_NOW + timedelta(minutes=59)
    )
    assert (claim.subscriber_id, claim.nonce, claim.issued_at) == (5, "abc", FIXED_NOW)
    with pytest.raises(BadToken, match="expired"):
        signer.read_confirmation(token, max_age_seconds=3600, now=FIXED_NOW + timedelta(minutes=61))
    assert signer.verify_confirmation(signer.sign_confirmation(9), max_age_seconds=60) == 9


@given(st.integers(min_value=1, max_value=2**62), st.text(min_size=1, max_size=40))
def test_confirmation_tokens_round_trip_and_refuse_any_change(
    subscriber_id: int, nonce: str
) -> None:
    signer = TokenSigner("s3cret")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    token = signer.sign_confirmation(subscriber_id, nonce=nonce, now=now)
    claim = signer.read_confirmation(token, max_age_seconds=60, now=now)
    assert (claim.subscriber_id, claim.nonce) == (subscriber_id, nonce)
    for position in (0, len(token) // 2, len(token) - 1):
        changed = (
            token[:position] + ("A" if token[position] != "A" else "B") + token[position + 1 :]
        )
        try:
            other = signer.read_confirmation(changed, max_age_seconds=60, now=now)
        except BadToken:
            continue
        # A change that decodes to the same bytes (base64 padding bits) must mean the same claim.
        assert (other.subscriber_id, other.nonce) == (subscriber_id, nonce)


# suppression that survives the row


def test_a_deleted_suppressed_address_cannot_be_imported_or_added_again(
    database: Database, tmp_path: Path
) -> None:
    with database.transaction() as session:
        gone, _ = add_subscriber(session, "gone@example.com", confirmed=True)
        stays, _ = add_subscriber(session, "kept@example.com", confirmed=True)
        signup.leave(session, gone.id, now=FIXED_NOW)
    with database.transaction() as session:
        removed = privacy.delete_subscriber(session, session.get_one(Subscriber, gone.id))
        assert removed.suppressed is True
        kept = privacy.delete_subscriber(session, session.get_one(Subscriber, stays.id))
        assert kept.suppressed is False
    assert import_text(database, tmp_path, "email\nGONE@example.com\nkept@example.com\n") == (
        1,
        0,
        1,
    )
    assert statuses(database) == {"kept@example.com": SubscriberStatus.CONFIRMED}
    with (
        pytest.raises(SuppressedAddress, match="may not be added again"),
        database.transaction() as session,
    ):
        add_subscriber(session, "gone@example.com", confirmed=True)


def test_the_owner_can_come_back_by_double_opt_in(database: Database) -> None:
    with database.transaction() as session:
        privacy.erase(session, "back@example.com", now=FIXED_NOW)
    with database.transaction() as session:
        result = signup.request(session, "back@example.com", consent=CONSENT)
        assert result.outcome is signup.Signup.NEW
        assert privacy.suppression_of(session, "back@example.com") is not None  # until confirmed
        signup.confirm(
            session,
            result.subscriber_id,
            nonce=result.nonce,
            ip=None,
            user_agent=None,
            now=FIXED_NOW,
        )
        assert privacy.suppression_of(session, "back@example.com") is None


# GDPR export and erasure, through the admin API


def test_export_gives_everything_held_about_an_address(web_db: Web) -> None:
    web = web_db
    web.subscribe("Person@Example.com", timezone="Europe/Rome")
    web.confirm("Person@Example.com")
    web.app.sources.fetch(now=FIXED_NOW)
    web.app.sending.send(edition_date=FIXED_NOW.date(), now=FIXED_NOW)
    answer = web.client.post(
        "/api/privacy/export", headers=AUTH, json={"email": "person@example.com"}
    )
    assert answer.status_code == 200
    data = answer.json()
    assert data["on_the_list"] is True
    held = data["subscriber"]
    assert held["email"] == "Person@example.com"
    assert held["timezone"] == "Europe/Rome"
    assert held["status"] == "confirmed"
    for key in (
        "consent_at",
        "consent_ip",
        "consent_user_agent",
        "consent_source",
        "consent_wording",
        "confirmed_ip",
    ):
        assert held[key], key
    assert "confirm_nonce" not in held
    assert [d["edition_date"] for d in data["deliveries"]] == [FIXED_NOW.date().isoformat()]
    assert data["deliveries"][0]["status"] == "sent"
    nobody = web.client.post(
        "/api/privacy/export", headers=AUTH, json={"email": "nobody@example.com"}
    ).json()
    assert (nobody["on_the_list"], nobody["subscriber"], nobody["deliveries"]) == (False, None, [])


def test_erasure_removes_personal_data_and_keeps_only_a_hash(web_db: Web, tmp_path: Path) -> None:
    web = web_db
    web.subscribe("erase.me@example.com")
    web.confirm("erase.me@example.com")
    web.app.sources.fetch(now=FIXED_NOW)
    web.app.sending.send(edition_date=FIXED_NOW.date(), now=FIXED_NOW)
    answer = web.client.post(
        "/api/privacy/erase", headers=AUTH, json={"email": "ERASE.ME@example.com"}
    )
    assert answer.json() == {"found": True, "suppressed": True}

    database = web.app.database
    with database.transaction(readonly=True) as session:
        assert session.scalars(select(Suppression.email_hash)).all() == [
            privacy.address_hash("erase.me@example.com")
        ]
        # Nothing readable is left in any table: every text column of every row, searched.
        for table in inspect(session.get_bind()).get_table_names():
            for row in session.execute(text(f'SELECT * FROM "{table}"')):
                assert "erase.me" not in " ".join(str(value) for value in row).lower(), table
    # Suppression holds: re-import, operator add, both refused.
    assert import_text(database, tmp_path, "email\nerase.me@example.com\n") == (0, 0, 1)
    refused = web.client.post(
        "/api/subscribers", headers=AUTH, json={"email": "erase.me@example.com"}
    )
    assert refused.status_code == 409
    # Erasing an address that is not on the list also keeps it off.
    again = web.client.post("/api/privacy/erase", headers=AUTH, json={"email": "never@example.com"})
    assert again.json() == {"found": False, "suppressed": True}
    assert import_text(database, tmp_path, "email\nnever@example.com\n") == (0, 0, 1)
