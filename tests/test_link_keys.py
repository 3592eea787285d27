"""Issue 10, finding 2: the link key in every personal token, and migration 0005 on existing data."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, text

from newsletter import migrate
from newsletter.db import Database
from subscribers import links, privacy, signup
from subscribers.errors import BadToken
from subscribers.model import ConsentEvent, Subscriber
from subscribers.tokens import PREFERENCES, UNSUBSCRIBE, LinkClaim, TokenSigner
from tests.conftest import FIXED_NOW

CONSENT = signup.Consent(at=FIXED_NOW, ip=None, user_agent=None, source="web:test", wording="v1")


def test_finding_2_a_token_carries_the_key_and_only_the_row_with_that_key_honours_it() -> None:
    signer = TokenSigner("k" * 40)
    for purpose in (UNSUBSCRIBE, PREFERENCES):
        claim = signer.read(signer.sign(7, purpose, key="abc"), purpose)
        assert claim == LinkClaim(7, "abc")
        with pytest.raises(BadToken):
            signer.read(signer.sign(7, purpose, key="abc"), "other")
    row = Subscriber(id=7, email="a@example.com", email_key="a@example.com", link_key="abc")
    row.legacy_links = False
    assert links.belongs_to(LinkClaim(7, "abc"), row)
    assert not links.belongs_to(LinkClaim(7, "abd"), row)
    assert not links.belongs_to(LinkClaim(7, None), row)  # an id alone is not enough
    assert not links.belongs_to(LinkClaim(8, "abc"), row)
    row.legacy_links = True  # subscribed before links carried a key: old mails keep working
    assert links.belongs_to(LinkClaim(7, None), row)
    confirmation = signer.read_confirmation(
        signer.sign_confirmation(7, nonce="n", now=FIXED_NOW, key="abc"),
        max_age_seconds=60,
        now=FIXED_NOW,
    )
    assert (confirmation.nonce, confirmation.key) == ("n", "abc")


def test_finding_2_migration_gives_existing_subscribers_keys_and_never_reuses_their_ids(
    tmp_path: Path,
) -> None:
    database = Database.from_url(f"sqlite:///{tmp_path / 'old.db'}")
    migrate.upgrade(database, "0004")
    with database.engine.begin() as connection:
        for number in (1, 2, 3):
            connection.execute(
                text(
                    "INSERT INTO subscribers (id, email, email_key, status, format, created_at, "
                    "status_changed_at, consent_at, consent_source, paused) VALUES (:id, :email, "
                    ":email, 'confirmed', 'html', :now, :now, :now, 'cli', 0)"
                ),
                {"id": number, "email": f"p{number}@example.com", "now": FIXED_NOW},
            )
    migrate.upgrade(database)
    with database.transaction() as session:
        rows = session.scalars(select(Subscriber).order_by(Subscriber.id)).all()
        keys = {row.link_key for row in rows}
        assert len(keys) == 3 and all(len(key) >= 16 for key in keys)
        assert all(row.legacy_links for row in rows)
        assert len(session.scalars(select(ConsentEvent)).all()) == 3
        privacy.erase(session, "p3@example.com", now=FIXED_NOW)
    with database.transaction() as session:
        fresh = signup.request(session, "new@example.com", consent=CONSENT)
        assert fresh.subscriber_id == 4
        assert not session.get_one(Subscriber, 4).legacy_links
    with database.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    database.dispose()
