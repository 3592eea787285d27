"""Issue 10, finding 4: erase and delete work for a subscriber with bounce or complaint reports,
and the privacy export includes those reports (they hold the address)."""

from __future__ import annotations

from click.testing import CliRunner
from sqlalchemy import func, select

from newsletter.cli import cli
from newsletter.delivery.bounces import Report, record_report
from newsletter.models import Bounce, BounceKind, Delivery
from tests.conftest import FIXED_NOW
from tests.web_fixtures import Web, web_db, web_factory

__all__ = ["web_db", "web_factory"]


def _reported(web: Web, address: str, kind: BounceKind) -> int:
    """Subscribe, send an edition, then receive a report about that message."""
    web.subscribed(address)
    web.app.sources.fetch(now=FIXED_NOW)
    web.app.sending.send(edition_date=FIXED_NOW.date(), now=FIXED_NOW, follow_up=True)
    with web.app.database.transaction() as session:
        subscriber = web.subscriber(address)
        assert subscriber is not None
        message_id = session.scalar(
            select(Delivery.message_id).where(Delivery.subscriber_id == subscriber.id)
        )
        assert message_id
        outcome = record_report(
            session,
            Report(
                report_id=f"<report-{kind.value}@example.net>",
                recipient=address,
                kind=kind,
                status="5.1.1",
                diagnostic=f"user unknown {address}",
                original_message_id=message_id,
            ),
            source="test",
            now=FIXED_NOW,
        )
        assert outcome == "suppressed"
        return subscriber.id


def _reports(web: Web) -> int:
    with web.app.database.transaction(readonly=True) as session:
        return session.scalar(select(func.count()).select_from(Bounce)) or 0


def test_finding_4_erase_of_a_subscriber_with_a_complaint_works(web_db: Web) -> None:
    web = web_db
    _reported(web, "angry@example.com", BounceKind.COMPLAINT)
    answer = web.client.post(
        "/api/privacy/erase", headers=web.admin(), json={"email": "angry@example.com"}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"found": True, "suppressed": True}
    assert _reports(web) == 0
    assert web.subscriber("angry@example.com") is None


def test_finding_4_delete_of_a_subscriber_with_a_bounce_works(web_db: Web) -> None:
    web = web_db
    subscriber_id = _reported(web, "bounced@example.com", BounceKind.HARD)
    answer = web.client.delete(f"/api/subscribers/{subscriber_id}", headers=web.admin())
    assert answer.status_code == 204, answer.text
    assert web.subscriber("bounced@example.com") is None
    with web.app.database.transaction(readonly=True) as session:
        left = session.scalars(select(Bounce.recipient)).all()
    assert "bounced@example.com" not in [value.lower() for value in left]


def test_finding_4_privacy_export_includes_bounce_and_complaint_reports(web_db: Web) -> None:
    web = web_db
    _reported(web, "reported@example.com", BounceKind.HARD)
    data = web.client.post(
        "/api/privacy/export", headers=web.admin(), json={"email": "reported@example.com"}
    ).json()
    assert [report["kind"] for report in data["reports"]] == ["hard"]
    assert data["reports"][0]["recipient"] == "reported@example.com"
    assert data["reports"][0]["diagnostic"] == "user unknown reported@example.com"


def _cli(web: Web, *args: str) -> str:
    settings = web.app.settings
    env = {
        "NEWSLETTER_CONFIG": "examples/demo.toml",
        "NEWSLETTER_DATABASE_URL": settings.database_url,
        "NEWSLETTER_OUTBOX_DIR": str(settings.outbox_dir),
    }
    result = CliRunner().invoke(cli, ["subscribers", *args], env=env)
    assert result.exit_code == 0, result.output
    return result.output


def test_finding_4_cli_delete_and_erase_go_through_the_same_function(web_db: Web) -> None:
    web = web_db
    _reported(web, "one@example.com", BounceKind.HARD)
    _reported(web, "two@example.com", BounceKind.COMPLAINT)
    assert "hash keeps it suppressed" in _cli(web, "delete", "one@example.com")
    assert "reports removed" in _cli(web, "erase", "two@example.com")
    assert web.subscriber("one@example.com") is None
    assert web.subscriber("two@example.com") is None
    assert _reports(web) == 0
