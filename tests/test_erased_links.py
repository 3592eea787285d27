"""Issue 10, finding 2: the links of an erased or deleted subscriber act on nobody.

Ids are never reused (AUTOINCREMENT on SQLite), and every personal link carries the subscriber's
random link key, which dies with the row.
"""

from __future__ import annotations

from sqlalchemy import select

from subscribers.model import Subscriber, SubscriberStatus
from tests.web_fixtures import Web, links_in, path_of, web_db, web_factory

__all__ = ["web_db", "web_factory"]


def _personal_paths(web: Web, address: str) -> tuple[str, str]:
    welcome = web.last_mail_to(address, "Welcome")
    urls = links_in(welcome)
    unsubscribe = next(url for url in urls if "/unsubscribe/" in url)
    preferences = next(url for url in urls if "/preferences/" in url)
    return path_of(unsubscribe), path_of(preferences)


def _erase(web: Web, address: str) -> None:
    answer = web.client.post("/api/privacy/erase", headers=web.admin(), json={"email": address})
    assert answer.status_code == 200, answer.text


def _delete(web: Web, address: str) -> None:
    subscriber = web.subscriber(address)
    assert subscriber is not None
    answer = web.client.delete(f"/api/subscribers/{subscriber.id}", headers=web.admin())
    assert answer.status_code == 204, answer.text


def _check_links_dead_and_next_person_untouched(web: Web, gone: str, remove: object) -> None:
    web.subscribed("first@example.com")
    web.subscribed(gone)
    unsubscribe, preferences = _personal_paths(web, gone)
    old = web.subscriber(gone)
    assert old is not None
    remove(web, gone)  # type: ignore[operator]
    web.subscribed("next@example.com")
    new = web.subscriber("next@example.com")
    assert new is not None
    assert new.id != old.id, "an id was reused"

    for path in (unsubscribe, preferences):
        page = web.client.get(path)
        assert "next@example.com" not in page.text.lower(), path
        assert page.status_code in (200, 400, 404), (path, page.status_code)
        assert "Your preferences" not in page.text and "Unsubscribe</" not in page.text, path
    left = web.client.post(unsubscribe, data={"List-Unsubscribe": "One-Click"})
    assert "next@example.com" not in left.text.lower()
    saved = web.client.post(preferences, data={"csrf_token": web.csrf("/"), "format": "text"})
    assert "next@example.com" not in saved.text.lower()
    with web.app.database.transaction(readonly=True) as session:
        person = session.scalars(
            select(Subscriber).where(Subscriber.email_key == "next@example.com")
        ).one()
        assert person.status is SubscriberStatus.CONFIRMED
        assert person.format.value == "html"


def test_finding_2_links_of_an_erased_subscriber_are_dead(web_db: Web) -> None:
    _check_links_dead_and_next_person_untouched(web_db, "gone@example.com", _erase)


def test_finding_2_links_of_a_deleted_subscriber_are_dead(web_db: Web) -> None:
    _check_links_dead_and_next_person_untouched(web_db, "gone@example.com", _delete)
