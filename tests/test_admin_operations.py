"""Manual operations through the admin API: test copies, pause, resume, cancel, follow-up, stats."""

from __future__ import annotations

from newsletter.services.editions import parse_date
from tests.conftest import FIXED_NOW
from tests.web_fixtures import ADMIN_TOKEN, Web, web, web_db, web_factory

__all__ = ["web", "web_db", "web_factory"]

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
EDITION = "2026-11-24"


def subscribe(web: Web, *addresses: str) -> None:
    for address in addresses:
        answer = web.client.post(
            "/api/subscribers", headers=AUTH, json={"email": address, "confirmed": True}
        )
        assert answer.status_code in (200, 201), answer.text


def test_pause_resume_cancel_and_stats(web_db: Web) -> None:
    web = web_db
    subscribe(web, "a@example.com", "b@example.com")
    web.app.sources.fetch(now=FIXED_NOW)
    assert web.client.post(f"/api/editions/{EDITION}/pause", headers=AUTH).status_code == 404
    queued = web.app.sending.enqueue(edition_date=parse_date(EDITION), now=FIXED_NOW)
    assert queued.enqueued == 2
    paused = web.client.post(f"/api/editions/{EDITION}/pause", headers=AUTH)
    assert paused.status_code == 200 and paused.json()["changed"] is True
    assert (
        web.client.post(f"/api/editions/{EDITION}/pause", headers=AUTH).json()["changed"] is False
    )
    assert (
        web.client.post(f"/api/editions/{EDITION}/resume", headers=AUTH).json()["changed"] is True
    )
    stats = web.client.get(f"/api/editions/{EDITION}/stats", headers=AUTH)
    assert stats.status_code == 200, stats.text
    assert stats.json()["deliveries"]["queued"] == 2
    cancelled = web.client.post(f"/api/editions/{EDITION}/cancel", headers=AUTH)
    assert cancelled.json()["dropped"] == 2
    assert (
        web.client.get(f"/api/editions/{EDITION}/stats", headers=AUTH).json()["status"]
        == "cancelled"
    )
    refused = web.client.post(
        f"/api/editions/{EDITION}/send", headers=AUTH, params={"wait": "true"}
    )
    assert refused.status_code == 409
    assert web.client.post(f"/api/editions/{EDITION}/cancel").status_code == 401


def test_test_copies_and_follow_up(web: Web) -> None:
    subscribe(web, "early@example.com")
    web.app.sources.fetch(now=FIXED_NOW)
    sent = web.client.post(f"/api/editions/{EDITION}/send", headers=AUTH, params={"wait": "true"})
    assert sent.json()["sent"] == 1
    copies = web.client.post(
        f"/api/editions/{EDITION}/test",
        headers=AUTH,
        json={"to": ["editor@example.org", "qa@example.org"]},
    )
    assert copies.status_code == 200, copies.text
    assert [result["accepted"] for result in copies.json()] == [True, True]
    subscribe(web, "late@example.com")
    follow = web.client.post(
        f"/api/editions/{EDITION}/send", headers=AUTH, params={"wait": "true", "follow_up": "true"}
    )
    assert follow.json()["sent"] == 1
    with web.app.database.transaction(readonly=True) as session:
        from sqlalchemy import func, select

        from newsletter.models import Delivery

        assert session.scalar(select(func.count()).select_from(Delivery)) == 2
