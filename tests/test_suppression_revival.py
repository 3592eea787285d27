"""Issue 10, finding 3: nobody but the owner can revive a suppressed address.

A signup of an unsubscribed, bounced or complained address changes nothing stored until the owner
completes a new double opt-in; the consent history only grows; delete and erase of an address that
was ever suppressed keep it suppressed; no import path revives it.
"""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import select

from newsletter.cli import cli
from subscribers.model import ConsentEvent, Subscriber, SubscriberStatus
from tests.web_fixtures import Web, web_db, web_factory

__all__ = ["web_db", "web_factory"]


def _row(web: Web, address: str) -> dict[str, object] | None:
    subscriber = web.subscriber(address)
    return None if subscriber is None else subscriber.as_dict()


def _history(web: Web, address: str) -> list[str]:
    subscriber = web.subscriber(address)
    assert subscriber is not None
    with web.app.database.transaction(readonly=True) as session:
        return list(
            session.scalars(
                select(ConsentEvent.kind)
                .where(ConsentEvent.subscriber_id == subscriber.id)
                .order_by(ConsentEvent.id)
            )
        )


def _unsubscribed(web: Web, address: str) -> None:
    web.subscribed(address)
    subscriber = web.subscriber(address)
    assert subscriber is not None
    answer = web.client.post("/api/unsubscribes", headers=web.admin(), json={"email": address})
    assert answer.status_code == 200, answer.text


def _import(web: Web, tmp_path: Path, address: str) -> dict[str, int]:
    csv_file = tmp_path / "people.csv"
    csv_file.write_text(f"email\n{address}\n", encoding="utf-8")
    answer = web.client.post(
        "/api/subscribers/import?confirmed=true",
        headers=web.admin(),
        files={"file": ("people.csv", csv_file.read_bytes(), "text/csv")},
    )
    assert answer.status_code == 200, answer.text
    result: dict[str, int] = answer.json()
    return result


def _cli_import(web: Web, tmp_path: Path, address: str) -> str:
    csv_file = tmp_path / "cli.csv"
    csv_file.write_text(f"email\n{address}\n", encoding="utf-8")
    result = CliRunner().invoke(
        cli, ["subscribers", "import", "--confirmed", str(csv_file)], env=_env(web)
    )
    return result.output


def _env(web: Web) -> dict[str, str]:
    settings = web.app.settings
    return {
        "NEWSLETTER_CONFIG": "examples/demo.toml",
        "NEWSLETTER_DATABASE_URL": settings.database_url,
        "NEWSLETTER_OUTBOX_DIR": str(settings.outbox_dir),
    }


def test_finding_3_a_signup_of_an_unsubscribed_address_changes_nothing_stored(
    web_db: Web,
) -> None:
    web = web_db
    _unsubscribed(web, "left@example.com")
    before = _row(web, "left@example.com")
    history = _history(web, "left@example.com")
    web.clock.advance(days=2)
    assert web.subscribe("left@example.com").status_code == 303
    assert _row(web, "left@example.com") == before
    assert _history(web, "left@example.com") == history
    # The owner completes the new double opt-in from the mailed link: back, with history appended.
    assert web.confirm("left@example.com").status_code == 200
    back = web.subscriber("left@example.com")
    assert back is not None and back.status is SubscriberStatus.CONFIRMED
    after = _history(web, "left@example.com")
    assert after[: len(history)] == history and len(after) > len(history)


def test_finding_3_a_signup_of_a_bounced_or_complained_address_changes_nothing(
    web_db: Web,
) -> None:
    web = web_db
    for address, status in (
        ("bounced@example.com", SubscriberStatus.BOUNCED),
        ("complained@example.com", SubscriberStatus.COMPLAINED),
    ):
        web.subscribed(address)
        with web.app.database.transaction() as session:
            row = session.scalars(select(Subscriber).where(Subscriber.email_key == address)).one()
            row.status = status
        before = _row(web, address)
        assert web.subscribe(address).status_code == 303
        assert _row(web, address) == before


def test_finding_3_stranger_signup_then_delete_then_import_confirmed_stays_suppressed(
    web_db: Web, tmp_path: Path
) -> None:
    web = web_db
    _unsubscribed(web, "victim@example.com")
    assert web.subscribe("victim@example.com").status_code == 303  # a stranger
    subscriber = web.subscriber("victim@example.com")
    assert subscriber is not None
    deleted = web.client.delete(f"/api/subscribers/{subscriber.id}", headers=web.admin())
    assert deleted.status_code == 204
    assert _import(web, tmp_path, "victim@example.com")["suppressed"] == 1
    assert "suppressed" in _cli_import(web, tmp_path, "victim@example.com")
    assert web.subscriber("victim@example.com") is None
    added = web.client.post(
        "/api/subscribers",
        headers=web.admin(),
        json={"email": "victim@example.com", "confirmed": True},
    )
    assert added.status_code == 409


def test_finding_3_delete_of_an_address_that_came_back_keeps_it_suppressed(
    web_db: Web, tmp_path: Path
) -> None:
    web = web_db
    _unsubscribed(web, "twice@example.com")
    web.subscribe("twice@example.com")
    web.confirm("twice@example.com")  # the owner came back
    subscriber = web.subscriber("twice@example.com")
    assert subscriber is not None and subscriber.status is SubscriberStatus.CONFIRMED
    web.client.delete(f"/api/subscribers/{subscriber.id}", headers=web.admin())
    report = _import(web, tmp_path, "twice@example.com")
    assert {key: report[key] for key in ("added", "already_present", "suppressed", "rejected")} == {
        "added": 0,
        "already_present": 0,
        "suppressed": 1,
        "rejected": [],
    }


def test_finding_3_no_import_revives_an_unsubscribed_row(web_db: Web, tmp_path: Path) -> None:
    web = web_db
    _unsubscribed(web, "stay.out@example.com")
    assert _import(web, tmp_path, "stay.out@example.com")["suppressed"] == 1
    _cli_import(web, tmp_path, "stay.out@example.com")
    row = web.subscriber("stay.out@example.com")
    assert row is not None and row.status is SubscriberStatus.UNSUBSCRIBED
