"""Signing up from the web with double opt-in, confirming, leaving and coming back.

Each function works in the caller's transaction and answers what happened and which mail, if any, the
caller should send; composing and sending the mail is the caller's business. Whatever the address's
state, the web shows the same page afterwards: the outcome is for the mail and the logs, never for the
person who typed the address.

A signup of an address that left (unsubscribed) changes nothing stored: the confirmation mail carries
a nonce derived from the row's link key and its last status change, and only confirming it brings the
address back. A bounced or complained address is not mailed at all. Every consent is appended to the
history (:mod:`subscribers.consent`).
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Executable, select
from sqlalchemy.orm import Session

from kernel import insert_ignoring_conflicts
from subscribers import consent as history
from subscribers import model
from subscribers.addresses import normalise
from subscribers.errors import SubscriberError
from subscribers.links import belongs_to, holder
from subscribers.model import ConsentKind, Subscriber, SubscriberStatus, new_link_key
from subscribers.privacy import lift_suppression
from subscribers.service import check_timezone
from subscribers.tokens import LinkClaim

#: Who a function acts on: an id (the operator's word) or a personal link (checked against the row).
Who = int | LinkClaim


@dataclass(frozen=True, slots=True)
class Consent:
    """The record of a consent: when, from where, on which form and which wording."""

    at: datetime
    ip: str | None
    user_agent: str | None
    source: str
    wording: str


class Signup(enum.StrEnum):
    NEW = "new"  # a new pending subscriber: send a confirmation mail
    PENDING = "pending"  # already pending: send the confirmation mail again
    RESUBSCRIBED = "resubscribed"  # had left: nothing changes; send a confirmation mail
    ALREADY = "already"  # confirmed already: tell the owner, change nothing
    BLOCKED = "blocked"  # bounced or complained: send nothing


@dataclass(frozen=True, slots=True)
class SignupResult:
    outcome: Signup
    subscriber_id: int
    email: str
    nonce: str | None
    link_key: str | None = None

    @property
    def mail(self) -> str | None:
        """Which mail to send: ``confirm``, ``already`` or None."""
        if self.outcome in (Signup.NEW, Signup.PENDING, Signup.RESUBSCRIBED):
            return "confirm"
        if self.outcome is Signup.ALREADY:
            return "already"
        return None


def new_nonce() -> str:
    return secrets.token_hex(16)


_clip = history.clip


def return_nonce(subscriber: Subscriber) -> str:
    """The nonce of a confirmation mailed to an address that left: good until its status changes.

    Nothing is stored for it: it derives from the row's link key and the time of its last status
    change, so a signup by anyone changes nothing, and the link dies when the owner leaves again.
    """
    changed = round(subscriber.status_changed_at.timestamp() * 1_000_000)
    digest = hashlib.sha256(f"return:{subscriber.link_key}:{changed}".encode()).hexdigest()
    return "r" + digest[:31]


def _record(session: Session, subscriber: Subscriber, consent: Consent, kind: ConsentKind) -> None:
    subscriber.consent_at = consent.at
    subscriber.consent_ip = _clip(consent.ip, 45)
    subscriber.consent_user_agent = _clip(consent.user_agent, 500)
    subscriber.consent_source = _clip(consent.source, 200)
    subscriber.consent_wording = _clip(consent.wording, 40)
    _append(session, subscriber.id, consent, kind)


def _append(session: Session, subscriber_id: int, consent: Consent, kind: ConsentKind) -> None:
    history.append(
        session,
        subscriber_id,
        kind,
        at=consent.at,
        source=consent.source,
        ip=consent.ip,
        user_agent=consent.user_agent,
        wording=consent.wording,
    )


def _load(session: Session, who: Who) -> Subscriber | None:
    if isinstance(who, LinkClaim):
        return holder(session, who, for_update=True)
    return session.get(Subscriber, who, with_for_update=True)


def _id_of(who: Who) -> int:
    return who.subscriber_id if isinstance(who, LinkClaim) else who


def _zone(value: str | None) -> str | None:
    try:
        return check_timezone(value)
    except SubscriberError:  # a browser's odd zone is an enhancement: fall back to the default
        return None


_NEW_SUBSCRIBER: dict[str, Executable] = {}


def _new_subscriber(session: Session) -> Executable:
    """The signup's insert of a dialect, built once: a signup only binds its values."""
    dialect = session.get_bind().dialect.name
    statement = _NEW_SUBSCRIBER.get(dialect)
    if statement is None:
        statement = _NEW_SUBSCRIBER[dialect] = insert_ignoring_conflicts(
            session, Subscriber, index_elements=["email_key"]
        ).returning(Subscriber.id)
    return statement


def request(
    session: Session,
    email: str,
    *,
    consent: Consent,
    timezone: str | None = None,
) -> SignupResult:
    """Someone asked, on the form, for ``email`` to be subscribed.

    Raises :class:`~subscribers.errors.InvalidAddress` for an address that cannot receive mail.
    """
    address = normalise(email)
    now = consent.at
    zone = _zone(timezone)
    nonce = new_nonce()
    link_key = new_link_key()
    inserted = session.execute(
        _new_subscriber(session),
        {
            "email": address.email,
            "email_key": address.key,
            "status": SubscriberStatus.PENDING,
            "timezone": zone,
            "format": model.MailFormat.HTML,
            "created_at": now,
            "status_changed_at": now,
            "consent_at": now,
            "consent_ip": _clip(consent.ip, 45),
            "consent_user_agent": _clip(consent.user_agent, 500),
            "consent_source": _clip(consent.source, 200),
            "consent_wording": _clip(consent.wording, 40),
            "confirm_nonce": nonce,
            "paused": False,
            "link_key": link_key,
            "legacy_links": False,
        },
    ).scalar()
    if inserted is not None:
        _append(session, inserted, consent, ConsentKind.SIGNUP)
        return SignupResult(Signup.NEW, inserted, address.email, nonce, link_key)

    subscriber = session.scalars(
        select(Subscriber).where(Subscriber.email_key == address.key).with_for_update()
    ).one()
    if subscriber.status is SubscriberStatus.PENDING:
        if subscriber.confirm_nonce is None:
            subscriber.confirm_nonce = nonce
        if zone and not subscriber.timezone:
            subscriber.timezone = zone
        _record(session, subscriber, consent, ConsentKind.SIGNUP)
        return SignupResult(
            Signup.PENDING,
            subscriber.id,
            subscriber.email,
            subscriber.confirm_nonce,
            subscriber.link_key,
        )
    if subscriber.status is SubscriberStatus.CONFIRMED:
        return SignupResult(
            Signup.ALREADY, subscriber.id, subscriber.email, None, subscriber.link_key
        )
    if subscriber.status is SubscriberStatus.UNSUBSCRIBED:
        # Nothing changes until the owner confirms from the mailed link (see return_nonce).
        return SignupResult(
            Signup.RESUBSCRIBED,
            subscriber.id,
            subscriber.email,
            return_nonce(subscriber),
            subscriber.link_key,
        )
    return SignupResult(Signup.BLOCKED, subscriber.id, subscriber.email, None)


class Confirmation(enum.StrEnum):
    CONFIRMED = "confirmed"  # pending → confirmed now: send the welcome mail
    ALREADY = "already"  # this link was used, and the subscriber is confirmed
    STALE = "stale"  # the link belongs to an earlier pending period, or the address left since
    UNKNOWN = "unknown"  # no such subscriber any more (deleted or erased)


@dataclass(frozen=True, slots=True)
class ConfirmResult:
    outcome: Confirmation
    subscriber_id: int
    email: str | None
    link_key: str | None = None


def confirm(
    session: Session,
    subscriber_id: int,
    *,
    nonce: str | None,
    ip: str | None,
    user_agent: str | None,
    now: datetime,
    key: str | None = None,
) -> ConfirmResult:
    """The confirmation button was pressed with a valid, unexpired token of ``subscriber_id``.

    The token works once: it must carry the nonce the subscriber holds, which confirming clears (or,
    for an address that left, :func:`return_nonce`, which confirming changes). With ``key`` the token
    must also carry the row's link key, so a token of an erased subscriber confirms nobody; without
    it the nonce alone binds the token to this pending period.
    """
    subscriber = session.get(Subscriber, subscriber_id, with_for_update=True)
    owns = belongs_to(LinkClaim(subscriber_id, key), subscriber)
    if subscriber is None or (key is not None and not owns):
        return ConfirmResult(Confirmation.UNKNOWN, subscriber_id, None)
    given = nonce or ""
    pending = subscriber.status is SubscriberStatus.PENDING and (
        subscriber.confirm_nonce is not None
        and secrets.compare_digest(subscriber.confirm_nonce, given)
    )
    returning = subscriber.status is SubscriberStatus.UNSUBSCRIBED and secrets.compare_digest(
        return_nonce(subscriber), given
    )
    if pending or returning:
        if returning:
            model.resubscribe(subscriber, now=now)
            subscriber.consent_at = now
            subscriber.consent_source = "web:confirm-return"
            subscriber.consent_ip = _clip(ip, 45)
            subscriber.consent_user_agent = _clip(user_agent, 500)
        model.confirm(subscriber, now=now)
        subscriber.confirm_nonce = None
        subscriber.confirmed_ip = _clip(ip, 45)
        subscriber.confirmed_user_agent = _clip(user_agent, 500)
        history.append(
            session,
            subscriber.id,
            ConsentKind.CONFIRM,
            at=now,
            source="web:confirm",
            ip=ip,
            user_agent=user_agent,
            wording=subscriber.consent_wording,
        )
        lift_suppression(session, subscriber.email_key)
        return ConfirmResult(
            Confirmation.CONFIRMED, subscriber.id, subscriber.email, subscriber.link_key
        )
    if subscriber.status is SubscriberStatus.CONFIRMED:
        # Hand out the link key only to a token that carries it (not to an old token of an id).
        return ConfirmResult(
            Confirmation.ALREADY,
            subscriber.id,
            subscriber.email,
            subscriber.link_key if owns else None,
        )
    return ConfirmResult(Confirmation.STALE, subscriber.id, subscriber.email)


class Leave(enum.StrEnum):
    UNSUBSCRIBED = "unsubscribed"  # left now: send the goodbye mail
    ALREADY = "already"  # was not receiving anything already
    UNKNOWN = "unknown"  # not on the list (deleted or erased)


@dataclass(frozen=True, slots=True)
class LeaveResult:
    outcome: Leave
    subscriber_id: int
    email: str | None
    link_key: str | None = None


def leave(session: Session, who: Who, *, now: datetime, reason: str = "one-click") -> LeaveResult:
    """Unsubscribe (idempotent): the signed unsubscribe link, a mail client's one-click POST, or the API.

    ``who`` is a :class:`LinkClaim` for a link (it must belong to the row), an id for the operator.
    """
    subscriber = _load(session, who)
    if subscriber is None:
        return LeaveResult(Leave.UNKNOWN, _id_of(who), None)
    if model.unsubscribe(subscriber, now=now, reason=reason):
        subscriber.confirm_nonce = None
        history.append(session, subscriber.id, ConsentKind.UNSUBSCRIBE, at=now, source=reason)
        return LeaveResult(Leave.UNSUBSCRIBED, subscriber.id, subscriber.email, subscriber.link_key)
    return LeaveResult(Leave.ALREADY, subscriber.id, subscriber.email, subscriber.link_key)


class Rejoin(enum.StrEnum):
    REJOINED = "rejoined"  # unsubscribed → confirmed again through the signed link
    ALREADY = "already"  # receiving already
    BLOCKED = "blocked"  # bounced or complained: the operator decides
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class RejoinResult:
    outcome: Rejoin
    subscriber_id: int
    email: str | None
    link_key: str | None = None


def rejoin(session: Session, who: Who, *, consent: Consent) -> RejoinResult:
    """Come back through the signed link of one's own mail (the "resubscribe" button).

    The link proves the address is the clicker's, as a confirmation would: the subscriber moves
    unsubscribed → pending → confirmed in one go, with a new consent record.
    """
    subscriber = _load(session, who)
    if subscriber is None:
        return RejoinResult(Rejoin.UNKNOWN, _id_of(who), None)
    if subscriber.status is SubscriberStatus.CONFIRMED:
        return RejoinResult(Rejoin.ALREADY, subscriber.id, subscriber.email, subscriber.link_key)
    if subscriber.status not in (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.PENDING):
        return RejoinResult(Rejoin.BLOCKED, subscriber.id, subscriber.email)
    if subscriber.status is SubscriberStatus.UNSUBSCRIBED:
        model.resubscribe(subscriber, now=consent.at)
    model.confirm(subscriber, now=consent.at)
    subscriber.confirm_nonce = None
    subscriber.confirmed_ip = _clip(consent.ip, 45)
    subscriber.confirmed_user_agent = _clip(consent.user_agent, 500)
    _record(session, subscriber, consent, ConsentKind.REJOIN)
    lift_suppression(session, subscriber.email_key)
    return RejoinResult(Rejoin.REJOINED, subscriber.id, subscriber.email, subscriber.link_key)
