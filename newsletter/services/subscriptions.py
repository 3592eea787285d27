"""The public subscription flows: subscribe (double opt-in), confirm, preferences, leave, come back.

The pages call these with what they parsed (a signed link's claim, the form's values, the client's
address); each returns what happened and, when one is due, the :class:`Mail` it wrote to the outbox
(:mod:`newsletter.delivery.outbox`) in the same transaction as the change. The mail is sent from
there, never while the page waits: the page a visitor sees does not depend on it.
The rules themselves live in :mod:`subscribers.signup`, :mod:`subscribers.preferences` and
:mod:`subscribers.ratelimit`; this module holds the transactions around them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from newsletter.coins import coin_labels
from newsletter.coins import followable_coins as followable
from newsletter.config import Settings
from newsletter.delivery import outbox
from newsletter.delivery.subscription_mails import Mail, MailKind, Recipient, SubscriptionMails
from newsletter.services.queued import Transactions
from newsletter.webhooks import events
from subscribers import preferences as prefs
from subscribers import ratelimit, signup
from subscribers.addresses import normalise
from subscribers.links import holder
from subscribers.model import Subscriber, SubscriberStatus
from subscribers.service import get_by_email
from subscribers.tokens import LinkClaim, TokenSigner

__all__ = ["Mail", "MailKind", "Recipient", "SubscriptionMails"]

FORM_SOURCE = "web:subscribe-form"
REJOIN_SOURCE = "web:resubscribe"
COINS_CACHE_SECONDS = 600


@dataclass(frozen=True, slots=True)
class Member:
    """What the pages show of a subscriber, read inside the transaction."""

    subscriber_id: int
    email: str
    status: SubscriberStatus
    link_key: str | None
    preferences: prefs.Preferences

    @classmethod
    def of(cls, subscriber: Subscriber) -> Member:
        return cls(
            subscriber.id,
            subscriber.email,
            subscriber.status,
            subscriber.link_key,
            prefs.current(subscriber),
        )

    @property
    def receiving(self) -> bool:
        return self.status in (SubscriberStatus.PENDING, SubscriberStatus.CONFIRMED)


def confirmation_mail(
    signer: TokenSigner,
    recipient: Recipient,
    *,
    nonce: str | None,
    now: datetime,
) -> Mail:
    token = signer.sign_confirmation(
        recipient.subscriber_id, nonce=nonce, now=now, key=recipient.link_key
    )
    return Mail(MailKind.CONFIRM, recipient, confirm_token=token)


def write_mail(
    session: Session, mails: SubscriptionMails | None, mail: Mail | None, *, now: datetime
) -> Mail | None:
    """Write ``mail`` to the outbox in the caller's transaction (nothing without ``mails``)."""
    if mail is not None and mails is not None:
        outbox.put(session, mails.compose(mail), now=now)
    return mail


# subscribe


def signup_policy(settings: Settings) -> ratelimit.SignupPolicy:
    return ratelimit.SignupPolicy(
        per_client=settings.subscribe_ip_limit,
        per_mailbox=settings.subscribe_address_limit,
        mails_per_day=settings.confirmations_per_day,
    )


@dataclass(frozen=True, slots=True)
class SubscribeOutcome:
    #: What the signup did; None when a rate limit refused it.
    outcome: signup.Signup | None
    refused: ratelimit.Refusal | None = None
    mail: Mail | None = None
    #: A mail was due but the mailbox had its share of subscription mails today.
    mail_limited: bool = False


def subscribe(
    database: Transactions,
    *,
    settings: Settings,
    signer: TokenSigner,
    mails: SubscriptionMails | None,
    email: str,
    ip: str,
    user_agent: str | None,
    timezone: str,
    now: datetime,
) -> SubscribeOutcome:
    """A subscribe form sent: rate limits, then the signup; :class:`InvalidAddress` for a bad one."""
    address = normalise(email)
    consent = signup.Consent(
        at=now, ip=ip, user_agent=user_agent, source=FORM_SOURCE, wording=settings.consent_wording
    )
    policy = signup_policy(settings)

    def request(session: Session) -> SubscribeOutcome:
        result = signup.request(session, address.email, consent=consent, timezone=timezone)
        kind, limited = result.mail, False
        if kind is not None and not ratelimit.allow_subscription_mail(
            session, policy, address_key=address.key, now=now
        ):
            kind, limited = None, True
        recipient = Recipient(result.subscriber_id, result.email, result.link_key)
        mail = None
        if kind == "confirm":
            mail = confirmation_mail(signer, recipient, nonce=result.nonce, now=now)
        elif kind == "already":
            mail = Mail(MailKind.ALREADY, recipient)
        write_mail(session, mails, mail, now=now)
        return SubscribeOutcome(result.outcome, mail=mail, mail_limited=limited)

    # On PostgreSQL the limits commit on their own, so that the shared per-client row is locked
    # only briefly. SQLite locks the whole database for any write: one transaction is one turn
    # of its writer lock instead of two (a refused request's hits commit all the same).
    one_turn = getattr(database, "dialect", None) == "sqlite"
    with database.transaction() as session:
        refused = ratelimit.check_signup(session, policy, ip=ip, address_key=address.key, now=now)
        if refused is not None:
            return SubscribeOutcome(None, refused=refused)
        if one_turn:
            return request(session)
    with database.transaction() as session:
        return request(session)


# confirm


def is_confirmed(database: Transactions, link: LinkClaim) -> bool:
    """Whether the subscriber of a confirmation link is confirmed already."""
    with database.transaction(readonly=True) as session:
        subscriber = holder(session, link)
        return subscriber is not None and subscriber.status is SubscriberStatus.CONFIRMED


@dataclass(frozen=True, slots=True)
class Confirmed:
    result: signup.ConfirmResult
    mail: Mail | None


def confirm(
    database: Transactions,
    subscriber_id: int,
    *,
    mails: SubscriptionMails | None,
    nonce: str | None,
    key: str | None,
    ip: str | None,
    user_agent: str | None,
    now: datetime,
) -> Confirmed:
    """The confirmation button pressed with a valid token; the welcome mail when it confirmed."""
    with database.transaction() as session:
        result = signup.confirm(
            session, subscriber_id, nonce=nonce, ip=ip, user_agent=user_agent, now=now, key=key
        )
        if result.outcome is signup.Confirmation.CONFIRMED:
            events.emit_about(
                session, events.SUBSCRIBER_CONFIRMED, result.subscriber_id, now=now, via="confirm"
            )
        mail = None
        if result.outcome is signup.Confirmation.CONFIRMED and result.email:
            mail = Mail(
                MailKind.WELCOME, Recipient(result.subscriber_id, result.email, result.link_key)
            )
        write_mail(session, mails, mail, now=now)
    return Confirmed(result, mail)


# preferences


@dataclass(frozen=True, slots=True)
class Coin:
    id: str
    label: str


_coin_cache: dict[tuple[str, ...], tuple[float, list[Coin]]] = {}


def followable_coins(database: Transactions, default_coins: Sequence[str]) -> list[Coin]:
    """The coins a reader may follow, named as the market data names them (cached a while): the
    newsletter's own coins, then every coin the market source returned lately, by market cap."""
    ids = tuple(default_coins)
    cached = _coin_cache.get(ids)
    if cached and time.monotonic() - cached[0] < COINS_CACHE_SECONDS:
        return cached[1]
    with database.transaction(readonly=True) as session:
        coins = [Coin(coin, label) for coin, label in followable(session, ids)]
        complete = coin_labels(session, ids).complete
    if complete:  # cache only once the market data names every coin
        _coin_cache[ids] = (time.monotonic(), coins)
    return coins


def matching(coins: Sequence[Coin], query: str) -> list[Coin]:
    """The coins whose id, name or symbol contain ``query`` (any case); all for an empty query."""
    needle = query.strip().casefold()
    if not needle:
        return list(coins)
    return [
        coin for coin in coins if needle in coin.id.casefold() or needle in coin.label.casefold()
    ]


def member(database: Transactions, link: LinkClaim) -> Member | None:
    """The subscriber a personal link belongs to; None when gone (or the link's key is stale)."""
    with database.transaction(readonly=True) as session:
        subscriber = holder(session, link)
        return None if subscriber is None else Member.of(subscriber)


def save_preferences(
    database: Transactions, link: LinkClaim, chosen: prefs.Preferences
) -> Member | None:
    """Store the chosen preferences; None when the subscriber is gone."""
    with database.transaction() as session:
        subscriber = holder(session, link, for_update=True)
        if subscriber is None:
            return None
        prefs.apply(subscriber, chosen)
        return Member.of(subscriber)


# leave and come back


@dataclass(frozen=True, slots=True)
class Left:
    result: signup.LeaveResult
    #: The subscriber as they are now (None when not on the list).
    member: Member | None
    mail: Mail | None


def _goodbye(result: signup.LeaveResult) -> Mail | None:
    if result.outcome is signup.Leave.UNSUBSCRIBED and result.email:
        return Mail(
            MailKind.GOODBYE, Recipient(result.subscriber_id, result.email, result.link_key)
        )
    return None


def leave(
    database: Transactions,
    link: LinkClaim,
    *,
    mails: SubscriptionMails | None,
    channel: str,
    now: datetime,
) -> Left:
    """Unsubscribe through a signed link (idempotent); the goodbye mail when it took effect."""
    with database.transaction() as session:
        result = signup.leave(session, link, now=now, reason=channel)
        # Held from here: the session keeps a clean row only while something refers to it.
        subscriber = holder(session, link)
        if result.outcome is signup.Leave.UNSUBSCRIBED:
            events.emit_about(
                session,
                events.SUBSCRIBER_UNSUBSCRIBED,
                subscriber if subscriber is not None else result.subscriber_id,
                now=now,
                via=channel,
            )
        found = None if subscriber is None else Member.of(subscriber)
        mail = write_mail(session, mails, _goodbye(result), now=now)
    return Left(result, found, mail)


def leave_by_operator(
    database: Transactions,
    who: LinkClaim | str,
    *,
    mails: SubscriptionMails | None,
    reason: str,
    now: datetime,
) -> Left:
    """Unsubscribe for the operator: a List-Unsubscribe token's claim, or an address.

    An address not on the list raises :class:`UnknownSubscriber`.
    """
    with database.transaction() as session:
        target: signup.Who = who if isinstance(who, LinkClaim) else get_by_email(session, who).id
        result = signup.leave(session, target, now=now, reason=reason)
        if result.outcome is signup.Leave.UNSUBSCRIBED:
            events.emit_about(
                session, events.SUBSCRIBER_UNSUBSCRIBED, result.subscriber_id, now=now, via=reason
            )
        mail = write_mail(session, mails, _goodbye(result), now=now)
    return Left(result, None, mail)


@dataclass(frozen=True, slots=True)
class Rejoined:
    result: signup.RejoinResult
    mail: Mail | None


def rejoin(
    database: Transactions,
    link: LinkClaim,
    *,
    settings: Settings,
    mails: SubscriptionMails | None,
    ip: str | None,
    user_agent: str | None,
    now: datetime,
) -> Rejoined:
    """Come back through the signed link of one's own mail; the welcome mail when it took effect."""
    consent = signup.Consent(
        at=now, ip=ip, user_agent=user_agent, source=REJOIN_SOURCE, wording=settings.consent_wording
    )
    with database.transaction() as session:
        result = signup.rejoin(session, link, consent=consent)
        if result.outcome is signup.Rejoin.REJOINED:
            events.emit_about(
                session, events.SUBSCRIBER_CONFIRMED, result.subscriber_id, now=now, via="rejoin"
            )
        mail = None
        if result.outcome is signup.Rejoin.REJOINED and result.email:
            mail = Mail(
                MailKind.WELCOME, Recipient(result.subscriber_id, result.email, result.link_key)
            )
        write_mail(session, mails, mail, now=now)
    return Rejoined(result, mail)
