"""Bounces and complaints: delivery status notifications (RFC 3464) and feedback reports (RFC 5965).

Reports come from a Maildir or an mbox that receives the Return-Path's mail, or from a provider's
webhook. Each report names recipients; we find the subscriber by the original Message-ID (stable
per edition and subscriber) or by address. A hard bounce (``Action: failed``, status 5.x.x)
suppresses the address as ``bounced``; a complaint as ``complained``; a soft bounce (4.x.x, or
``delayed``) is counted only. Every report is kept in ``bounces`` once, so processing a mailbox
again changes nothing.
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
from newsletter.models import Bounce, BounceKind, Delivery
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
    if message.get_content_type() != "multipart/report":
        return []
    report_id = str(message.get("Message-ID") or "").strip() or _fallback_id(raw)
    report_type = str(message.get_param("report-type", "", header="content-type")).lower()
    parts: list[Message] = list(message.iter_parts()) if isinstance(message, EmailMessage) else []
    original_id = _original_message_id(parts)
    if report_type == "delivery-status":
        return _dsn(parts, report_id, original_id)
    if report_type == "feedback-report":
        return _feedback(parts, report_id, original_id)
    return []


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
        recipient = _address(block.get("Final-Recipient") or block.get("Original-Recipient"))
        action = str(block.get("Action") or "").strip().lower()
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
        suppress(subscriber, status, reason=reason[:2000], now=now)
    except IllegalTransition:
        return "counted"  # a complaint already stands; a later bounce does not replace it
    if delivery is not None and report.kind is BounceKind.HARD:
        bounce_delivery(
            delivery,
            detail=f"bounced after acceptance: {report.status or ''} {report.diagnostic or ''}",
        )
    return "suppressed"


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
