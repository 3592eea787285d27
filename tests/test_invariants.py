"""Issue 10, "Invariants, proven": who may receive mail, across any sequence of actions.

A ``RuleBasedStateMachine`` drives the real web app (signup, confirmation, preferences, one-click
unsubscribe, coming back), the admin API (delete, erase, import with and without ``confirmed``), the
bounce and complaint recorder, and the pipeline (enqueue, send), interleaved, on SQLite and
PostgreSQL. After every step:

- no address that unsubscribed, bounced, complained or was erased (and has not since completed its
  own double opt-in from a mailed link) is confirmed, or is handed to the transport;
- no id is ever reused;
- every link of an erased or deleted subscriber is dead;
- each subscriber has at most one delivery per edition;
- the consent history of each subscriber only grows.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import re
from collections.abc import Callable
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import delete, func, select, update

from newsletter.delivery.bounces import Report, record_report
from newsletter.errors import NewsletterError
from newsletter.models import Bounce, BounceKind, Delivery, Issue, IssueStatus
from subscribers.model import (
    ConsentEvent,
    RateLimitBucket,
    Subscriber,
    SubscriberStatus,
    Suppression,
)
from tests.conftest import FIXED_NOW
from tests.web_fixtures import Web, path_of, web_factory

__all__ = ["web_factory"]

ADDRESSES = ("ann@example.com", "bob@example.com")
EDITIONS = (FIXED_NOW.date(), FIXED_NOW.date() + timedelta(days=1))
_URL = re.compile(r"https?://[^\s<>\"']+/(confirm|unsubscribe|preferences)/[A-Za-z0-9_.\-]+")

#: Enough to matter, small enough for ``make test``: 13-30 s per database on a busy 2-core machine.
EXAMPLES = 40
STEPS = 40

address = st.sampled_from(ADDRESSES)
edition = st.sampled_from(EDITIONS)


class Mailbox:
    """The personal links each address received, read from the outbox (parsed once per file)."""

    def __init__(self, outbox: Path) -> None:
        self.outbox = outbox
        self._seen: dict[str, tuple[str, list[tuple[str, str]]]] = {}
        self._order: list[str] = []

    def _scan(self) -> None:
        folder = self.outbox / "new"
        if not folder.is_dir():
            return
        fresh = sorted(
            (path for path in folder.iterdir() if path.name not in self._seen),
            key=lambda path: (path.stat().st_mtime_ns, path.name),
        )
        for path in fresh:
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            body = message.get_body(preferencelist=("plain",))
            text = body.get_content() if body is not None else ""  # type: ignore[attr-defined]
            text += " " + str(message.get("List-Unsubscribe", ""))
            found = [(kind.group(1), path_of(kind.group(0))) for kind in _URL.finditer(text)]
            self._seen[path.name] = (str(message["To"]).strip("<>").lower(), found)
            self._order.append(path.name)

    def links(self, to: str, kind: str | None = None) -> list[str]:
        self._scan()
        return [
            link
            for name in self._order
            if self._seen[name][0] == to
            for found_kind, link in self._seen[name][1]
            if kind is None or found_kind == kind
        ]

    def last(self, to: str, kind: str) -> str | None:
        found = self.links(to, kind)
        return found[-1] if found else None

    def clear(self) -> None:
        """Forget the mails of earlier examples (they stay in the folder, unread)."""
        folder = self.outbox / "new"
        for path in folder.iterdir() if folder.is_dir() else ():
            self._seen[path.name] = ("", [])
        self._order.clear()


def _reset(web: Web) -> None:
    """A fresh list for each example; the built editions are kept (rendering is the costly part)."""
    with web.app.database.transaction() as session:
        for table in (Bounce, Delivery, ConsentEvent, Suppression, RateLimitBucket, Subscriber):
            session.execute(delete(table))
        session.execute(
            update(Issue).values(status=IssueStatus.DRAFT, sending_at=None, sent_at=None)
        )


def machine_for(web: Web) -> type[RuleBasedStateMachine]:
    mailbox = Mailbox(web.outbox)

    class Subscriptions(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            _reset(web)
            mailbox.clear()
            #: Addresses that must get nothing until their owner opts in again.
            self.blocked: set[str] = set()
            self.ever_suppressed: set[str] = set()
            self.owner_of_id: dict[int, str] = {}
            self.gone_ids: set[int] = set()
            self.dead_links: list[str] = []
            self.history: dict[int, list[tuple[int, str]]] = {}
            self.handed: list[tuple[int, str]] = []

        # helpers

        def rows(self) -> dict[str, Subscriber]:
            with web.app.database.transaction(readonly=True) as session:
                return {row.email_key: row for row in session.scalars(select(Subscriber))}

        def status(self, who: str) -> SubscriberStatus | None:
            row = self.rows().get(who)
            return row.status if row else None

        def tick(self) -> None:
            web.clock.advance(minutes=1)

        def suppressed(self, who: str) -> None:
            self.blocked.add(who)
            self.ever_suppressed.add(who)

        def opted_in(self, who: str, before: SubscriberStatus | None) -> None:
            if before is not SubscriberStatus.CONFIRMED and self.status(who) is (
                SubscriberStatus.CONFIRMED
            ):
                self.blocked.discard(who)

        def bury(self, who: str) -> None:
            """The row of ``who`` goes: all links mailed to it so far must be dead from now on."""
            row = self.rows().get(who)
            if row is not None:
                self.gone_ids.add(row.id)
            self.dead_links += mailbox.links(who)

        @initialize(who=st.sets(address))
        def on_the_list(self, who: set[str]) -> None:
            """Start from readers who subscribed and confirmed, as people do."""
            for each in sorted(who):
                web.subscribed(each)

        # rules: the public web pages, as the address's owner or a stranger

        @rule(who=address)
        def subscribe(self, who: str) -> None:
            self.tick()
            assert web.subscribe(who).status_code == 303

        @rule(who=address)
        def confirm_from_mail(self, who: str) -> None:
            link = mailbox.last(who, "confirm")
            if link is None:
                return
            self.tick()
            before = self.status(who)
            web.client.post(link, data={"csrf_token": web.csrf("/")})
            self.opted_in(who, before)

        @rule(who=address)
        def come_back_from_mail(self, who: str) -> None:
            link = mailbox.last(who, "unsubscribe")
            if link is None:
                return
            self.tick()
            before = self.status(who)
            token = link.rsplit("/", 1)[1]
            web.client.post(f"/resubscribe/{token}", data={"csrf_token": web.csrf("/")})
            self.opted_in(who, before)

        @rule(who=address, text_only=st.booleans())
        def preferences(self, who: str, text_only: bool) -> None:
            link = mailbox.last(who, "preferences")
            if link is None:
                return
            self.tick()
            data = {"csrf_token": web.csrf("/"), "format": "text" if text_only else "html"}
            web.client.post(link, data=data)

        @rule(who=address)
        def one_click_unsubscribe(self, who: str) -> None:
            link = mailbox.last(who, "unsubscribe")
            if link is None:
                return
            self.tick()
            before = self.status(who)
            web.client.post(link, data={"List-Unsubscribe": "One-Click"})
            if before in (SubscriberStatus.PENDING, SubscriberStatus.CONFIRMED) and self.status(
                who
            ) is (SubscriberStatus.UNSUBSCRIBED):
                self.suppressed(who)

        # rules: reports, the operator

        @rule(who=address, complaint=st.booleans())
        def report(self, who: str, complaint: bool) -> None:
            self.tick()
            before = self.status(who)
            kind = BounceKind.COMPLAINT if complaint else BounceKind.HARD
            with web.app.database.transaction() as session:
                record_report(
                    session,
                    Report(report_id=f"<r{web.clock.now.timestamp()}>", recipient=who, kind=kind),
                    source="test",
                    now=web.clock.now,
                )
            if before is not None:
                self.suppressed(who)

        @rule(who=address)
        def delete(self, who: str) -> None:
            row = self.rows().get(who)
            if row is None:
                return
            self.tick()
            self.bury(who)
            answer = web.client.delete(f"/api/subscribers/{row.id}", headers=web.admin())
            assert answer.status_code == 204, answer.text
            if who in self.ever_suppressed:
                self.blocked.add(who)

        @rule(who=address)
        def erase(self, who: str) -> None:
            self.tick()
            self.bury(who)
            answer = web.client.post("/api/privacy/erase", headers=web.admin(), json={"email": who})
            assert answer.status_code == 200, answer.text
            self.suppressed(who)

        @rule(who=st.lists(address, min_size=1, max_size=3, unique=True), confirmed=st.booleans())
        def import_csv(self, who: list[str], confirmed: bool) -> None:
            self.tick()
            body = "email\n" + "\n".join(who) + "\n"
            answer = web.client.post(
                f"/api/subscribers/import?confirmed={'true' if confirmed else 'false'}",
                headers=web.admin(),
                files={"file": ("list.csv", body.encode(), "text/csv")},
            )
            assert answer.status_code == 200, answer.text

        @rule(hours=st.integers(min_value=1, max_value=30))
        def time_passes(self, hours: int) -> None:
            """Queued rows fall due (editions are queued at each reader's local send time)."""
            web.clock.advance(hours=hours)

        @rule(day=edition)
        def enqueue(self, day: Any) -> None:
            self.tick()
            with contextlib.suppress(NewsletterError):  # an edition already sent queues no more
                web.app.sending.enqueue(edition_date=day, now=web.clock.now)

        @rule(day=edition)
        def send(self, day: Any) -> None:
            self.tick()
            owners = {row.id: key for key, row in self.rows().items()}
            self.handed = []
            web.app.sending.send(
                edition_date=day,
                now=web.clock.now,
                clock=web.clock,
                follow_up=True,
                on_result=lambda done: self.handed.append((done.subscriber_id, str(done.outcome))),
            )
            for subscriber_id, outcome in self.handed:
                assert not (outcome == "sent" and owners.get(subscriber_id) in self.blocked), (
                    f"an edition went to {owners.get(subscriber_id)}, who left"
                )

        @rule(data=st.data())
        def use_a_dead_link(self, data: st.DataObject) -> None:
            if not self.dead_links:
                return
            link = data.draw(st.sampled_from(self.dead_links))
            before = {key: row.status for key, row in self.rows().items()}
            self.tick()
            if "/confirm/" in link:
                web.client.post(link, data={"csrf_token": web.csrf("/")})
            elif "/unsubscribe/" in link:
                web.client.post(link, data={"List-Unsubscribe": "One-Click"})
            else:
                web.client.post(link, data={"csrf_token": web.csrf("/"), "format": "text"})
            after = {key: row.status for key, row in self.rows().items()}
            assert before == after, f"a dead link {link} changed {before} into {after}"

        # invariants, after every step

        @invariant()
        def nobody_who_left_is_confirmed(self) -> None:
            rows = self.rows()
            for who in self.blocked:
                row = rows.get(who)
                assert row is None or row.status is not SubscriberStatus.CONFIRMED, (
                    f"{who} left and is confirmed again without opting in"
                )

        @invariant()
        def no_id_is_reused(self) -> None:
            for key, row in self.rows().items():
                assert row.id not in self.gone_ids, f"id {row.id} of a removed row came back"
                assert self.owner_of_id.setdefault(row.id, key) == key, f"id {row.id} reused"

        @invariant()
        def links_of_removed_subscribers_are_dead(self) -> None:
            for link in self.dead_links[-3:]:
                if "/confirm/" in link:
                    continue  # its GET shows a button and changes nothing; the POST is a rule
                page = web.client.get(link)
                for who in ADDRESSES:
                    assert who not in page.text.lower(), f"{link} shows {who}"
                assert "Your preferences" not in page.text

        @invariant()
        def one_delivery_per_subscriber_and_edition(self) -> None:
            with web.app.database.transaction(readonly=True) as session:
                counts = (
                    select(func.count().label("n"))
                    .select_from(Delivery)
                    .group_by(Delivery.issue_id, Delivery.subscriber_id)
                    .subquery()
                )
                worst = session.scalar(select(func.max(counts.c.n)))
            assert (worst or 0) <= 1

        @invariant()
        def consent_history_only_grows(self) -> None:
            with web.app.database.transaction(readonly=True) as session:
                now: dict[int, list[tuple[int, str]]] = {}
                for event in session.scalars(select(ConsentEvent).order_by(ConsentEvent.id)):
                    now.setdefault(event.subscriber_id, []).append((event.id, event.kind))
                present = set(session.scalars(select(Subscriber.id)))
            for subscriber_id, events in self.history.items():
                if subscriber_id in present:
                    assert now.get(subscriber_id, [])[: len(events)] == events
            self.history = now

    return Subscriptions


def test_invariants_hold_across_any_sequence_of_actions(
    web_factory: Callable[..., Web], database_url: str
) -> None:
    web = web_factory(
        database_url,
        subscribe_ip_limit=100_000,
        subscribe_address_limit=100_000,
        confirmations_per_day=100,
    )
    web.app.sources.fetch(now=FIXED_NOW)
    for day in EDITIONS:
        web.app.editions.build(edition_date=day, now=FIXED_NOW)
    run_state_machine_as_test(
        machine_for(web),
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
