"""The outbox of subscription mails: confirm, already subscribed, welcome, goodbye.

A subscription mail is composed when it becomes due
(:mod:`newsletter.delivery.subscription_mails`) and written as a row of ``outbox_mails`` in the
same transaction as the subscriber change that made it due, so that it exists exactly when the
change does: a crash after the page answered loses nothing, and the page never waits for SMTP. The
row holds the finished message bytes (the personal links signed at write time); they are cleared
once the mail is sent or given up.

Rows are delivered like editions: claimed under a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL,
``BEGIN IMMEDIATE`` on SQLite), sent, and marked sent; a refusal for now is retried with exponential
backoff and jitter, a permanent one (or the last try) marks the row failed with its reason. A
process killed while sending leaves its rows ``sending`` until the lease passes; another takes them
then.

Nothing here logs a message's bytes or links: a log line names the kind, the row and the subscriber.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Select,
    Table,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from newsletter.delivery.recording import exponential_backoff
from newsletter.delivery.subscription_mails import Composed
from newsletter.delivery.transports import Outcome, SendResult
from newsletter.models import OutboxMail, OutboxStatus

RETRY_BASE = timedelta(seconds=30)
RETRY_CAP = timedelta(hours=1)
#: Longest reason kept for a try that failed.
ERROR_CHARS = 1000
#: The outbox as a Core table: the statements of the pages' path skip the ORM's bookkeeping.
_TABLE = cast(Table, OutboxMail.__table__)


_PUT = insert(_TABLE)


def put(session: Session, composed: Composed, *, now: datetime) -> None:
    """Write a composed mail, due now, in the caller's transaction.

    One prebuilt Core insert, its values bound: an ORM object flushed at commit cost several times
    the insert on the subscribe page's path.
    """
    session.execute(
        _PUT,
        {
            "kind": composed.kind.value,
            "subscriber_id": composed.subscriber_id,
            "recipient": composed.recipient,
            "envelope_sender": composed.sender,
            "message_id": composed.message_id,
            "message": composed.message,
            "status": OutboxStatus.QUEUED,
            "attempts": 0,
            "not_before": now,
            "created_at": now,
        },
    )


def backoff(attempts: int, *, rng: random.Random | None = None) -> timedelta:
    """Exponential backoff with jitter: up to 30 s × 2^(attempts-1), capped at 1 h."""
    return exponential_backoff(attempts, base=RETRY_BASE, cap=RETRY_CAP, rng=rng)


def _due(now: object) -> ColumnElement[bool]:
    return or_(
        (_TABLE.c.status == OutboxStatus.QUEUED) & (_TABLE.c.not_before <= now),
        (_TABLE.c.status == OutboxStatus.SENDING) & (_TABLE.c.lease_until < now),
    )


# The statements of a delivery round, built once with their parameters bound at execution: building
# the expressions again for every claim cost more than running them.
_NOW = bindparam("b_now", type_=_TABLE.c.not_before.type)
_IDS: BindParameter[list[int]] = bindparam("b_ids", expanding=True)
_CLAIMS: dict[int, Select[Any]] = {}
_LEASE = (
    update(_TABLE)
    .where(_TABLE.c.id.in_(_IDS))
    .values(
        status=OutboxStatus.SENDING,
        lease_until=bindparam("b_lease", type_=_TABLE.c.lease_until.type),
        attempts=_TABLE.c.attempts + 1,
    )
)
_EMPTY = (
    update(_TABLE)
    .where(_TABLE.c.id.in_(_IDS))
    .values(status=OutboxStatus.FAILED, last_error="the message was cleared")
)
_SENT = (
    update(_TABLE)
    .where(_TABLE.c.id.in_(_IDS), _TABLE.c.status == OutboxStatus.SENDING)
    .values(
        status=OutboxStatus.SENT,
        sent_at=_NOW,
        message=None,
        lease_until=None,
        last_error=None,
    )
)


def _claim(limit: int) -> Select[Any]:
    statement = _CLAIMS.get(limit)
    if statement is None:
        table = _TABLE
        built: Select[Any] = (
            select(
                table.c.id,
                table.c.kind,
                table.c.subscriber_id,
                table.c.envelope_sender,
                table.c.recipient,
                table.c.message_id,
                table.c.message,
                table.c.attempts,
            )
            .where(_due(_NOW))
            .order_by(table.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        statement = _CLAIMS[limit] = built
    return statement


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    kind: str
    subscriber_id: int | None
    sender: str
    recipient: str
    message_id: str
    message: bytes
    #: This try's number (1 for the first).
    attempt: int


def claim(session: Session, *, now: datetime, lease: timedelta, limit: int) -> list[Claimed]:
    """Take up to ``limit`` due mails (or mails whose sender's lease passed) for this process.

    Core statements on the table, two whatever the batch: the pages deliver their own mails, so a
    claim runs about once a page under load.
    """
    rows = session.execute(_claim(limit), {"b_now": now}).all()
    if not rows:
        return []
    session.execute(_LEASE, {"b_ids": [row.id for row in rows], "b_lease": now + lease})
    claimed = []
    empty = []
    for row in rows:
        if row.message is None:  # cannot happen for a row in flight; never send an empty mail
            empty.append(row.id)
            continue
        claimed.append(
            Claimed(
                row.id,
                row.kind,
                row.subscriber_id,
                row.envelope_sender,
                row.recipient,
                row.message_id,
                row.message,
                row.attempts + 1,
            )
        )
    if empty:
        session.execute(_EMPTY, {"b_ids": empty})
    return claimed


@dataclass(frozen=True, slots=True)
class Tried:
    """What became of one claimed mail."""

    claimed: Claimed
    result: SendResult


def record(
    session: Session,
    tried: Sequence[Tried],
    *,
    now: datetime,
    max_attempts: int,
    rng: random.Random | None = None,
) -> None:
    """Write what became of claimed mails: sent, due again after a backoff, or failed.

    The mails sent (nearly all of them) are marked in one statement; each other one in its own.
    """
    sent = [item.claimed.id for item in tried if item.result.outcome is Outcome.SENT]
    if sent:
        session.execute(_SENT, {"b_ids": sent, "b_now": now})
    for item in tried:
        claimed, result = item.claimed, item.result
        if result.outcome is Outcome.SENT:
            continue
        reason = (f"{result.code} " if result.code else "") + (result.detail or "")
        values: dict[str, object]
        if result.outcome is Outcome.FAILED or (
            result.outcome is not Outcome.DEFERRED and claimed.attempt >= max_attempts
        ):
            values = {
                "status": OutboxStatus.FAILED,
                "message": None,
                "lease_until": None,
                "last_error": reason[:ERROR_CHARS] or "failed",
            }
        else:
            # A mail not handed over (paced) was no try.
            deferred = result.outcome is Outcome.DEFERRED
            attempts = claimed.attempt - 1 if deferred else claimed.attempt
            wait = RETRY_BASE if deferred else backoff(claimed.attempt, rng=rng)
            values = {
                "status": OutboxStatus.QUEUED,
                "attempts": attempts,
                "not_before": now + wait,
                "lease_until": None,
                "last_error": reason[:ERROR_CHARS] or "retry",
            }
        session.execute(
            update(_TABLE)
            .where(_TABLE.c.id == claimed.id, _TABLE.c.status == OutboxStatus.SENDING)
            .values(**values)
        )


def next_due(session: Session) -> datetime | None:
    """When the next queued mail is due, or a sending one's lease passes (None: nothing open)."""
    queued = session.scalar(
        select(func.min(OutboxMail.not_before)).where(OutboxMail.status == OutboxStatus.QUEUED)
    )
    leased = session.scalar(
        select(func.min(OutboxMail.lease_until)).where(OutboxMail.status == OutboxStatus.SENDING)
    )
    times = [value for value in (queued, leased) if value is not None]
    return min(times) if times else None


#: The statuses a mail ends in: only these are ever pruned.
FINISHED = (OutboxStatus.SENT, OutboxStatus.FAILED)


def _finished_before(before: datetime) -> ColumnElement[bool]:
    return _TABLE.c.status.in_(FINISHED) & (_TABLE.c.created_at < before)


def prunable(session: Session, *, before: datetime) -> int:
    """How many finished mails (sent or given up) were written before ``before``."""
    counted = select(func.count()).select_from(_TABLE).where(_finished_before(before))
    return int(session.scalar(counted) or 0)


def prune(session: Session, *, before: datetime) -> int:
    """Delete the finished mails written before ``before``; mails waiting or in flight stay."""
    result = session.execute(delete(_TABLE).where(_finished_before(before)))
    return int(getattr(result, "rowcount", 0) or 0)


@dataclass(frozen=True, slots=True)
class Failure:
    id: int
    kind: str
    subscriber_id: int | None
    recipient: str
    attempts: int
    reason: str
    created_at: datetime


def counts(session: Session) -> dict[str, int]:
    """Mails in each status."""
    rows = session.execute(
        select(OutboxMail.status, func.count()).group_by(OutboxMail.status)
    ).all()
    found = {OutboxStatus(status).value: int(count) for status, count in rows}
    return {status.value: found.get(status.value, 0) for status in OutboxStatus}


def failures(session: Session, *, limit: int) -> list[Failure]:
    """The latest mails given up, newest first, with their reasons."""
    rows = session.scalars(
        select(OutboxMail)
        .where(OutboxMail.status == OutboxStatus.FAILED)
        .order_by(OutboxMail.id.desc())
        .limit(limit)
    )
    return [
        Failure(
            row.id,
            row.kind,
            row.subscriber_id,
            row.recipient,
            row.attempts,
            row.last_error or "",
            row.created_at,
        )
        for row in rows
    ]


def forget_subscriber(session: Session, subscriber_id: int) -> int:
    """Remove every mail to a subscriber (erasure, deletion); returns how many."""
    result = session.execute(delete(OutboxMail).where(OutboxMail.subscriber_id == subscriber_id))
    return int(getattr(result, "rowcount", 0) or 0)
