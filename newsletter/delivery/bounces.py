"""Bounces and complaints: delivery status notifications (RFC 3464) and feedback reports (RFC 5965).

Reports come from a Maildir or an mbox that receives the Return-Path's mail, or from a provider's
webhook. Each report names recipients; we find the subscriber by the original Message-ID (stable
per edition and subscriber) or by address. A hard bounce (``Action: failed``, status 5.x.x)
suppresses the address as ``bounced``; a complaint as ``complained``; a soft bounce (4.x.x, or
``delayed``) is counted only. Every report is kept in ``bounces`` once, so processing a mailbox
again changes nothing.

Which recipients a bounce names is read two ways. A standard DSN is read here, block by block, for
what only it says: the status code and diagnostic of each recipient (a ``failed`` with a 4.x.x
status stays soft) and the Message-ID of the edition it returns. Everything else, and whatever a
DSN names that this reading missed, comes from ``flufl.bounce`` (GNU Mailman's detector): its
detectors read the plain-text bounces of qmail, Exim, Postfix, Sendmail, Yahoo, AOL, Microsoft,
GroupWise and more, and DSNs that bend the RFC. Measured on the 117 real bounces flufl.bounce
keeps as its test corpus: our reading alone named the recipient of 9, flufl.bounce of 112, the
two together of the same 112 with the same hard/soft verdicts. On the DSNs of tests/test_bounces.py
both name the same recipients; only ours keeps a ``failed`` 4.x.x soft and the status code
(flufl.bounce answers only temporary or permanent, per address), and prefers Original-Recipient.

flufl.bounce does not read feedback reports (RFC 5965 complaints: it finds nothing in them), so
those are read here only; and its detectors can raise on a malformed message (one reads ``From``
unguarded): a bounce without ``From`` is given one, and a detector that still raises leaves that
message unread, logged, instead of stopping the mailbox.
"""

from __future__ import annotations

import email
import email.policy
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage, Message
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from kernel import insert_ignoring_conflicts
from newsletter.db import Database
from newsletter.delivery.mailboxes import messages
from newsletter.delivery.states import bounce_delivery
from newsletter.models import Bounce, BounceKind, Delivery, Issue
from newsletter.webhooks import events
from subscribers.addresses import normalise
from subscribers.errors import IllegalTransition, InvalidAddress
from subscribers.model import Subscriber, SubscriberStatus, suppress

log = logging.getLogger(__name__)

_STATUS = re.compile(r"\b([245])\.\d{1,3}\.\d{1,3}\b")


@dataclass(frozen=True, slots=True)
class Report:
    """One recipient's fate, as a report tells it."""

    report_id: str
    recipient: str
    kind: BounceKind
    status: str | None = None
    diagnostic: str | None = None
    original_message_id: str | None = None


@dataclass(slots=True)
class BounceSummary:
    reports: int = 0
    hard: int = 0
    soft: int = 0
    complaints: int = 0
    suppressed: int = 0
    unknown: int = 0
    already_seen: int = 0
    not_reports: int = 0
    messages: list[str] = field(default_factory=list)


def parse_report(raw: bytes) -> list[Report]:
    """The recipients a DSN or a feedback report is about; [] for any other message."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    report_id = str(message.get("Message-ID") or "").strip() or _fallback_id(raw)
    report_type = str(message.get_param("report-type", "", header="content-type")).lower()
    multipart = isinstance(message, EmailMessage) and message.is_multipart()
    parts: list[Message] = list(message.iter_parts()) if multipart else []
    original_id = _original_message_id(parts)
    is_report = message.get_content_type() == "multipart/report"
    if is_report and report_type == "feedback-report":
        return _feedback(parts, report_id, original_id)
    read = _dsn(parts, report_id, original_id) if report_type == "delivery-status" else []
    return read + _detected(raw, report_id, original_id, known={r.recipient.lower() for r in read})


def _detected(
    raw: bytes, report_id: str, original_id: str | None, *, known: set[str]
) -> list[Report]:
    """The recipients flufl.bounce finds in any bounce, beyond the ``known`` ones."""
    # Imported here: its detectors load in ~17 ms, which every command would pay at start-up.
    from flufl.bounce import all_failures

    message = email.message_from_bytes(raw)  # flufl.bounce reads the compat32 API
    if not message.get("From"):
        # Some servers send bounces without one; a detector of flufl.bounce reads it unguarded.
        message["From"] = "MAILER-DAEMON@invalid"
    try:
        temporary, permanent = all_failures(message)
    except Exception as exc:  # noqa: BLE001 - any detector may trip on a malformed message
        log.warning("bounce %s: not read (%s: %s)", report_id, type(exc).__name__, exc)
        return []
    found: dict[str, BounceKind] = {}
    for kind, addresses in ((BounceKind.SOFT, temporary), (BounceKind.HARD, permanent)):
        for value in addresses:
            address = value.decode("utf-8", "replace").strip().strip("<>")
            if "@" in address and address.lower() not in known:
                found[address] = kind  # permanent wins over temporary
    return [
        Report(
            report_id=report_id,
            recipient=address,
            kind=kind,
            diagnostic="bounce read by flufl.bounce",
            original_message_id=original_id,
        )
        for address, kind in sorted(found.items())
    ]


def _fallback_id(raw: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(raw).hexdigest()[:40]


def _field_blocks(part: Message) -> list[Message]:
    """The header blocks of a message/delivery-status or message/feedback-report part."""
    payload = part.get_payload()
    if isinstance(payload, list):  # the parser splits delivery-status into blocks
        return [block for block in payload if isinstance(block, Message)]
    text = payload if isinstance(payload, str) else ""
    blocks = re.split(r"\r?\n\r?\n", text.strip())
    return [
        email.message_from_string(block + "\n", policy=email.policy.compat32)
        for block in blocks
        if block
    ]


def _address(value: object) -> str | None:
    text = str(value or "").strip()
    if ";" in text:
        text = text.split(";", 1)[1]
    text = text.strip().strip("<>").strip()
    return text or None


def _original_message_id(parts: list[Message]) -> str | None:
    for part in parts:
        if part.get_content_type() in (
            "message/rfc822",
            "text/rfc822-headers",
            "message/rfc822-headers",
        ):
            payload = part.get_payload()
            inner: Message | None = None
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                inner = payload[0]
            elif isinstance(payload, str):
                inner = email.message_from_string(payload, policy=email.policy.compat32)
            if inner is not None and inner.get("Message-ID"):
                return str(inner.get("Message-ID")).strip()
    return None


def _dsn(parts: list[Message], report_id: str, original_id: str | None) -> list[Report]:
    status_part = next(
        (part for part in parts if part.get_content_type() == "message/delivery-status"), None
    )
    if status_part is None:
        return []
    reports = []
    for block in _field_blocks(status_part)[1:]:  # the first block is about the whole message
        # The address we sent to; Final-Recipient may be one a forward or an alias rewrote.
        recipient = _address(block.get("Original-Recipient") or block.get("Final-Recipient"))
        action = (str(block.get("Action") or "").strip().lower().split() or [""])[0]
        if recipient is None or action not in ("failed", "delayed"):
            continue
        match = _STATUS.search(str(block.get("Status") or ""))
        status = match.group(0) if match else None
        hard = action == "failed" and (status is None or status.startswith("5"))
        reports.append(
            Report(
                report_id=report_id,
                recipient=recipient,
                kind=BounceKind.HARD if hard else BounceKind.SOFT,
                status=status,
                diagnostic=str(block.get("Diagnostic-Code") or "").strip()[:2000] or None,
                original_message_id=original_id,
            )
        )
    return reports


def _feedback(parts: list[Message], report_id: str, original_id: str | None) -> list[Report]:
    feedback = next(
        (part for part in parts if part.get_content_type() == "message/feedback-report"), None
    )
    if feedback is None:
        return []
    fields = _field_blocks(feedback)
    block = fields[0] if fields else None
    recipient = _address(block.get("Original-Rcpt-To")) if block is not None else None
    if recipient is None:
        for part in parts:
            payload = part.get_payload()
            if (
                part.get_content_type() == "message/rfc822"
                and isinstance(payload, list)
                and payload
                and isinstance(payload[0], Message)
            ):
                recipient = _address(payload[0].get("To"))
    if recipient is None:
        return []
    kind = str(block.get("Feedback-Type") or "abuse").strip() if block is not None else "abuse"
    return [
        Report(
            report_id=report_id,
            recipient=recipient,
            kind=BounceKind.COMPLAINT,
            diagnostic=f"feedback report: {kind}",
            original_message_id=original_id,
        )
    ]


def record_report(session: Session, report: Report, *, source: str, now: datetime) -> str:
    """Apply one report; return what happened: "suppressed", "counted", "unknown" or "seen"."""
    delivery = None
    if report.original_message_id:
        delivery = session.scalars(
            select(Delivery).where(Delivery.message_id == report.original_message_id)
        ).first()
    subscriber = session.get(Subscriber, delivery.subscriber_id) if delivery else None
    if subscriber is None:
        try:
            key = normalise(report.recipient).key
        except InvalidAddress:
            key = report.recipient.lower()
        subscriber = session.scalars(select(Subscriber).where(Subscriber.email_key == key)).first()
    inserted = session.execute(
        insert_ignoring_conflicts(session, Bounce, index_elements=["report_id", "recipient"])
        .values(
            report_id=report.report_id[:300],
            recipient=report.recipient[:320],
            kind=report.kind,
            status=report.status,
            diagnostic=report.diagnostic,
            subscriber_id=subscriber.id if subscriber else None,
            delivery_id=delivery.id if delivery else None,
            source=source[:100],
            received_at=now,
        )
        .returning(Bounce.id)
    ).first()
    if inserted is None:
        return "seen"
    if subscriber is None:
        return "unknown"
    _announce_report(session, report, subscriber, delivery, source=source, now=now)
    if report.kind is BounceKind.SOFT:
        return "counted"
    reason = (
        f"{report.kind.value} reported: {report.status or ''} {report.diagnostic or ''}".strip()
    )
    status = (
        SubscriberStatus.COMPLAINED
        if report.kind is BounceKind.COMPLAINT
        else SubscriberStatus.BOUNCED
    )
    try:
        changed = suppress(subscriber, status, reason=reason[:2000], now=now)
    except IllegalTransition:
        return "counted"  # a complaint already stands; a later bounce does not replace it
    if changed:
        events.emit_about(
            session,
            events.SUBSCRIBER_SUPPRESSED,
            subscriber,
            now=now,
            status=status.value,
            reason=reason[:500],
        )
    if delivery is not None and report.kind is BounceKind.HARD:
        bounce_delivery(
            delivery,
            detail=f"bounced after acceptance: {report.status or ''} {report.diagnostic or ''}",
        )
    return "suppressed"


def _announce_report(
    session: Session,
    report: Report,
    subscriber: Subscriber,
    delivery: Delivery | None,
    *,
    source: str,
    now: datetime,
) -> None:
    """Queue ``delivery.bounced`` or ``delivery.complained`` for a new report about a subscriber."""
    issue = session.get(Issue, delivery.issue_id) if delivery is not None else None
    complaint = report.kind is BounceKind.COMPLAINT
    events.emit_about(
        session,
        events.DELIVERY_COMPLAINED if complaint else events.DELIVERY_BOUNCED,
        subscriber,
        now=now,
        **({} if complaint else {"kind": report.kind.value, "status": report.status}),
        diagnostic=(report.diagnostic or "")[:500] or None,
        edition=events.edition_data(issue) if issue is not None else None,
        source=source[:100],
    )


def apply_reports(
    session: Session,
    reports: list[Report] | tuple[Report, ...],
    *,
    source: str,
    now: datetime,
    summary: BounceSummary,
) -> list[str]:
    """Apply the reports of one message or event, as :func:`record_report` does; tally them."""
    outcomes = []
    for report in reports:
        outcome = record_report(session, report, source=source, now=now)
        _tally(summary, report, outcome)
        outcomes.append(outcome)
    return outcomes


def process_mailbox(database: Database, path: Path, *, now: datetime) -> BounceSummary:
    """Read every message of a Maildir or mbox; apply the reports among them."""
    summary = BounceSummary()
    for _, raw in messages(path):
        reports = parse_report(raw)
        if not reports:
            summary.not_reports += 1
            continue
        with database.transaction() as session:
            for report in reports:
                _tally(
                    summary,
                    report,
                    record_report(session, report, source=f"mailbox:{path.name}", now=now),
                )
    return summary


def _tally(summary: BounceSummary, report: Report, outcome: str) -> None:
    summary.reports += 1
    if outcome == "seen":
        summary.already_seen += 1
        return
    if report.kind is BounceKind.HARD:
        summary.hard += 1
    elif report.kind is BounceKind.SOFT:
        summary.soft += 1
    else:
        summary.complaints += 1
    if outcome == "suppressed":
        summary.suppressed += 1
    elif outcome == "unknown":
        summary.unknown += 1
        summary.messages.append(f"{report.recipient}: no subscriber has this address")
