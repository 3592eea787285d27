"""Signing up from the web with double opt-in, confirming, leaving and coming back.

Each function works in the caller's transaction and answers what happened and which mail, if any, the
caller should send; composing and sending the mail is the caller's business. Whatever the address's
state, the web shows the same page afterwards: the outcome is for the mail and the logs, never for the
person who typed the address.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from subscribers import model
from subscribers.addresses import normalise
from subscribers.base import insert_ignoring_conflicts
from subscribers.errors import SubscriberError
from subscribers.model import Subscriber, SubscriberStatus
from subscribers.privacy import lift_suppression
from subscribers.service import check_timezone


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
    RESUBSCRIBED = "resubscribed"  # had left, now pending again: send a confirmation mail
    ALREADY = "already"  # confirmed already: tell the owner, change nothing
    BLOCKED = "blocked"  # bounced or complained: send nothing


@dataclass(frozen=True, slots=True)
class SignupResult:
    outcome: Signup
    subscriber_id: int
    email: str
    nonce: str | None

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


def _clip(value: str | None, length: int) -> str | None:
    if value is None:
        return None
    cleaned = "".join(char for char in value if char.isprintable())
    return cleaned[:length] or None


def _record(subscriber: Subscriber, consent: Consent) -> None:
    subscriber.consent_at = consent.at
    subscriber.consent_ip = _clip(consent.ip, 45)
    subscriber.consent_user_agent = _clip(consent.user_agent, 500)
    subscriber.consent_source = _clip(consent.source, 200)
    subscriber.consent_wording = _clip(consent.wording, 40)


def _zone(value: str | None) -> str | None:
    try:
        return check_timezone(value)
    except SubscriberError:  # a browser's odd zone is an enhancement: fall back to the default
        return None


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
    statement = insert_ignoring_conflicts(session, Subscriber, index_elements=["email_key"])
    inserted = session.execute(
        statement.values(
            email=address.email,
            email_key=address.key,
            status=SubscriberStatus.PENDING,
            timezone=zone,
            format=model.MailFormat.HTML,
            created_at=now,
            status_changed_at=now,
            consent_at=now,
            consent_ip=_clip(consent.ip, 45),
            consent_user_agent=_clip(consent.user_agent, 500),
            consent_source=_clip(consent.source, 200),
            consent_wording=_clip(consent.wording, 40),
            confirm_nonce=nonce,
            paused=False,
        ).returning(Subscriber.id)
    ).scalar()
    if inserted is not None:
        return SignupResult(Signup.NEW, inserted, address.email, nonce)

    subscriber = session.scalars(
        select(Subscriber).where(Subscriber.email_key == address.key).with_for_update()
    ).one()
    if subscriber.status is SubscriberStatus.PENDING:
        if subscriber.confirm_nonce is None:
            subscriber.confirm_nonce = nonce
        if zone and not subscriber.timezone:
            subscriber.timezone = zone
        _record(subscriber, consent)
        return SignupResult(
            Signup.PENDING, subscriber.id, subscriber.email, subscriber.confirm_nonce
        )
    if subscriber.status is SubscriberStatus.CONFIRMED:
        return SignupResult(Signup.ALREADY, subscriber.id, subscriber.email, None)
    if subscriber.status is SubscriberStatus.UNSUBSCRIBED:
        model.resubscribe(subscriber, now=now)
        subscriber.confirm_nonce = nonce
        if zone:
            subscriber.timezone = zone
        _record(subscriber, consent)
        return SignupResult(Signup.RESUBSCRIBED, subscriber.id, subscriber.email, nonce)
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


def confirm(
    session: Session,
    subscriber_id: int,
    *,
    nonce: str | None,
    ip: str | None,
    user_agent: str | None,
    now: datetime,
) -> ConfirmResult:
    """The confirmation button was pressed with a valid, unexpired token of ``subscriber_id``.

    The token works once: it must carry the nonce the subscriber holds, which confirming clears.
    """
    subscriber = session.get(Subscriber, subscriber_id, with_for_update=True)
    if subscriber is None:
        return ConfirmResult(Confirmation.UNKNOWN, subscriber_id, None)
    if subscriber.status is SubscriberStatus.PENDING and (
        subscriber.confirm_nonce is not None
        and secrets.compare_digest(subscriber.confirm_nonce, nonce or "")
    ):
        model.confirm(subscriber, now=now)
        subscriber.confirm_nonce = None
        subscriber.confirmed_ip = _clip(ip, 45)
        subscriber.confirmed_user_agent = _clip(user_agent, 500)
        lift_suppression(session, subscriber.email_key)
        return ConfirmResult(Confirmation.CONFIRMED, subscriber.id, subscriber.email)
    if subscriber.status is SubscriberStatus.CONFIRMED:
        return ConfirmResult(Confirmation.ALREADY, subscriber.id, subscriber.email)
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


def leave(
    session: Session, subscriber_id: int, *, now: datetime, reason: str = "one-click"
) -> LeaveResult:
    """Unsubscribe (idempotent): the signed unsubscribe link, a mail client's one-click POST, or the API."""
    subscriber = session.get(Subscriber, subscriber_id, with_for_update=True)
    if subscriber is None:
        return LeaveResult(Leave.UNKNOWN, subscriber_id, None)
    if model.unsubscribe(subscriber, now=now, reason=reason):
        subscriber.confirm_nonce = None
        return LeaveResult(Leave.UNSUBSCRIBED, subscriber.id, subscriber.email)
    return LeaveResult(Leave.ALREADY, subscriber.id, subscriber.email)


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


def rejoin(session: Session, subscriber_id: int, *, consent: Consent) -> RejoinResult:
    """Come back through the signed link of one's own mail (the "resubscribe" button).

    The link proves the address is the clicker's, as a confirmation would: the subscriber moves
    unsubscribed → pending → confirmed in one go, with a new consent record.
    """
    subscriber = session.get(Subscriber, subscriber_id, with_for_update=True)
    if subscriber is None:
        return RejoinResult(Rejoin.UNKNOWN, subscriber_id, None)
    if subscriber.status is SubscriberStatus.CONFIRMED:
        return RejoinResult(Rejoin.ALREADY, subscriber.id, subscriber.email)
    if subscriber.status not in (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.PENDING):
        return RejoinResult(Rejoin.BLOCKED, subscriber.id, subscriber.email)
    if subscriber.status is SubscriberStatus.UNSUBSCRIBED:
        model.resubscribe(subscriber, now=consent.at)
    model.confirm(subscriber, now=consent.at)
    subscriber.confirm_nonce = None
    subscriber.confirmed_ip = _clip(consent.ip, 45)
    subscriber.confirmed_user_agent = _clip(consent.user_agent, 500)
    _record(subscriber, consent)
    lift_suppression(session, subscriber.email_key)
    return RejoinResult(Rejoin.REJOINED, subscriber.id, subscriber.email)
