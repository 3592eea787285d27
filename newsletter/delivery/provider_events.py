"""Bounces and complaints as a sending provider posts them: what each event says, as :class:`Report`s.

A webhook body is one of:

- a whole report message (RFC 3464 DSN, RFC 5965 feedback report, or a bounce flufl.bounce reads),
  sent as ``message/rfc822`` or ``text/plain``, or as ``multipart/report`` with the parts only
  (the boundary then is in the request's Content-Type);
- an Amazon SNS message (``Type``: ``SubscriptionConfirmation``, ``Notification``,
  ``UnsubscribeConfirmation``) whose ``Message`` is an Amazon SES event, or an SES event alone
  (SNS with raw message delivery);
- a Postmark ``Bounce`` or ``SpamComplaint`` webhook (other record types are not about bounces);
- a Mailgun webhook (``event-data`` with event ``failed`` or ``complained``).

Each event is named so that a redelivery is recognised: SES by its ``feedbackId``, Postmark by its
bounce ``ID``, Mailgun by its event ``id``, a message by its Message-ID (or a hash of its bytes).
The name becomes the ``report_id`` of the ``bounces`` rows, unique with the recipient, as for the
mailbox. Nothing here touches the database: :func:`newsletter.delivery.bounces.record_report`
applies the reports.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from newsletter.delivery.bounces import Report, parse_report
from newsletter.errors import ReportError, SourceError
from newsletter.models import BounceKind

#: Where Amazon SNS serves its SubscribeURLs (commercial, China and GovCloud partitions).
SNS_HOSTS = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")

#: Postmark's bounce types and what each means here; any other type is not acted on.
POSTMARK_KINDS = {
    "HardBounce": BounceKind.HARD,
    "BadEmailAddress": BounceKind.HARD,
    "ManuallyDeactivated": BounceKind.HARD,
    "SpamComplaint": BounceKind.COMPLAINT,
    "SoftBounce": BounceKind.SOFT,
    "Transient": BounceKind.SOFT,
    "DnsError": BounceKind.SOFT,
    "Blocked": BounceKind.SOFT,
    "DMARCPolicy": BounceKind.SOFT,
    "SpamNotification": BounceKind.SOFT,
    "VirusNotification": BounceKind.SOFT,
    "SMTPApiError": BounceKind.SOFT,
    "Unknown": BounceKind.SOFT,
}

_RAW_TYPES = ("message/rfc822", "multipart/report", "text/plain", "application/octet-stream", "")
_JSON_TYPES = ("application/json", "text/plain", "")


@dataclass(frozen=True, slots=True)
class ProviderEvent:
    """What one posted event says: its provider, its name, the recipients it reports."""

    provider: str
    event_id: str
    reports: tuple[Report, ...] = ()
    #: Why an event reports no recipient (a delivery, an open, an unsubscribe confirmation).
    note: str | None = None


@dataclass(frozen=True, slots=True)
class SubscriptionRequest:
    """Amazon SNS asks to confirm a subscription of the webhook to a topic."""

    topic_arn: str
    subscribe_url: str
    message_id: str = field(default="")


def read_event(body: bytes, content_type: str) -> ProviderEvent | SubscriptionRequest:
    """The event a webhook body holds; :class:`ReportError` with the reason when it holds none."""
    media = content_type.split(";", 1)[0].strip().lower()
    if not body.strip():
        raise ReportError(
            "the request body is empty",
            hint="post the provider's JSON event or the whole report message",
        )
    if media in _JSON_TYPES and body.lstrip()[:1] == b"{":
        return _json_event(body)
    if media == "application/json":
        raise ReportError(
            "the body is not a JSON object",
            hint="post the provider's event as its JSON object",
        )
    if media == "multipart/report":
        # Only the parts came in the body; the boundary is in the request's header.
        body = f"MIME-Version: 1.0\r\nContent-Type: {content_type}\r\n\r\n".encode() + body
    elif media not in _RAW_TYPES:
        raise ReportError(
            f"cannot read a body of type {media!r}",
            hint=(
                "send JSON (application/json or text/plain) or a whole report message "
                "(message/rfc822, multipart/report, text/plain)"
            ),
        )
    return _message_event(body)


def _message_event(raw: bytes) -> ProviderEvent:
    if b":" not in raw.split(b"\n", 1)[0]:
        raise ReportError(
            "the body is neither JSON nor a mail message (its first line is not a header)",
            hint="post the whole report message, headers first, as message/rfc822",
        )
    reports = parse_report(raw)
    event_id = reports[0].report_id if reports else _digest(raw)
    note = (
        None
        if reports
        else (
            "the message names no bounced or complaining recipient: it is not a delivery "
            "status notification (RFC 3464), a feedback report (RFC 5965) or a known bounce"
        )
    )
    return ProviderEvent("message", event_id, tuple(reports), note)


def _json_event(body: bytes) -> ProviderEvent | SubscriptionRequest:
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReportError(
            f"the body is not valid JSON: {exc}",
            hint="post the provider's event unchanged",
        ) from None
    if not isinstance(data, dict):
        raise ReportError("the JSON body is not an object", hint="post one event per request")
    if "Type" in data and "TopicArn" in data:
        return _sns(data)
    if "notificationType" in data or "eventType" in data:
        return _ses(data, fallback_id=_digest(body))
    if "RecordType" in data:
        return _postmark(data, fallback_id=_digest(body))
    if isinstance(data.get("event-data"), dict):
        return _mailgun(data["event-data"], fallback_id=_digest(body))
    raise ReportError(
        "the JSON is not an event this webhook reads",
        hint=(
            "expected an Amazon SNS message (Type, TopicArn), an Amazon SES event "
            "(notificationType or eventType), a Postmark webhook (RecordType) or a Mailgun "
            "webhook (event-data)"
        ),
    )


def _digest(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()[:40]


def _text(data: dict[str, Any], key: str, *, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ReportError(f"{where}: {key} is missing or not text", hint="post the event unchanged")
    return value.strip()


def _object(data: dict[str, Any], key: str, *, where: str) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise ReportError(
            f"{where}: {key} is missing or not an object", hint="post the event unchanged"
        )
    return value


def _sns(data: dict[str, Any]) -> ProviderEvent | SubscriptionRequest:
    kind = _text(data, "Type", where="SNS message")
    message_id = str(data.get("MessageId") or "")
    if kind == "SubscriptionConfirmation":
        return SubscriptionRequest(
            topic_arn=_text(data, "TopicArn", where="SNS subscription confirmation"),
            subscribe_url=_text(data, "SubscribeURL", where="SNS subscription confirmation"),
            message_id=message_id,
        )
    if kind == "UnsubscribeConfirmation":
        return ProviderEvent(
            "ses", f"sns:{message_id}", note="SNS unsubscribed this endpoint from the topic"
        )
    if kind != "Notification":
        raise ReportError(
            f"SNS message: unknown Type {kind!r}",
            hint="expected SubscriptionConfirmation, Notification or UnsubscribeConfirmation",
        )
    text = _text(data, "Message", where="SNS notification")
    try:
        inner = json.loads(text)
    except json.JSONDecodeError:
        inner = None
    if not isinstance(inner, dict) or not ("notificationType" in inner or "eventType" in inner):
        raise ReportError(
            "SNS notification: its Message is not an Amazon SES event",
            hint="subscribe this endpoint only to the topics SES publishes bounces and complaints to",
        )
    return _ses(inner, fallback_id=f"sns:{message_id}" if message_id else _digest(text.encode()))


def _ses_message_id(mail: dict[str, Any]) -> str | None:
    """Our Message-ID of the mail SES reports on (SES's own ``messageId`` is not ours)."""
    common = mail.get("commonHeaders")
    if isinstance(common, dict) and isinstance(common.get("messageId"), str):
        return _bracketed(common["messageId"])
    headers = mail.get("headers")
    if isinstance(headers, list):
        for header in headers:
            if (
                isinstance(header, dict)
                and str(header.get("name", "")).lower() == "message-id"
                and isinstance(header.get("value"), str)
            ):
                return _bracketed(header["value"])
    return None


def _bracketed(value: str) -> str | None:
    value = value.strip()
    if not value:
        return None
    return value if value.startswith("<") else f"<{value}>"


def _ses(data: dict[str, Any], *, fallback_id: str) -> ProviderEvent:
    kind = str(data.get("notificationType") or data.get("eventType") or "")
    mail = data.get("mail") if isinstance(data.get("mail"), dict) else {}
    assert isinstance(mail, dict)
    original = _ses_message_id(mail)
    if kind == "Bounce":
        bounce = _object(data, "bounce", where="SES bounce")
        event_id = f"ses:{bounce.get('feedbackId') or fallback_id}"
        bounce_type = str(bounce.get("bounceType") or "")
        hard = bounce_type == "Permanent"
        recipients = _list(bounce, "bouncedRecipients", where="SES bounce")
        reports = []
        for item in recipients:
            address = _text(item, "emailAddress", where="SES bounce: a bounced recipient")
            status = item.get("status") if isinstance(item.get("status"), str) else None
            reports.append(
                Report(
                    report_id=event_id,
                    recipient=address,
                    kind=BounceKind.HARD if hard else BounceKind.SOFT,
                    status=status[:20] if status else None,
                    diagnostic=_diagnostic(
                        item.get("diagnosticCode"),
                        f"SES {bounce_type or 'Undetermined'} bounce "
                        f"({bounce.get('bounceSubType') or 'General'})",
                    ),
                    original_message_id=original,
                )
            )
        return ProviderEvent("ses", event_id, tuple(reports))
    if kind == "Complaint":
        complaint = _object(data, "complaint", where="SES complaint")
        event_id = f"ses:{complaint.get('feedbackId') or fallback_id}"
        feedback = complaint.get("complaintFeedbackType") or "abuse"
        reports = [
            Report(
                report_id=event_id,
                recipient=_text(
                    item, "emailAddress", where="SES complaint: a complained recipient"
                ),
                kind=BounceKind.COMPLAINT,
                diagnostic=f"SES complaint: {feedback}",
                original_message_id=original,
            )
            for item in _list(complaint, "complainedRecipients", where="SES complaint")
        ]
        return ProviderEvent("ses", event_id, tuple(reports))
    return ProviderEvent(
        "ses", f"ses:{fallback_id}", note=f"an SES {kind or 'unnamed'} event is not a bounce"
    )


def _list(data: dict[str, Any], key: str, *, where: str) -> list[dict[str, Any]]:
    value = data.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(i, dict) for i in value):
        raise ReportError(
            f"{where}: {key} is missing, empty or not a list of objects",
            hint="post the event unchanged",
        )
    return value


def _diagnostic(value: object, default: str) -> str:
    text = value.strip() if isinstance(value, str) else ""
    return (text or default)[:2000]


def _postmark(data: dict[str, Any], *, fallback_id: str) -> ProviderEvent:
    record = str(data.get("RecordType") or "")
    if record not in ("Bounce", "SpamComplaint"):
        return ProviderEvent(
            "postmark",
            f"postmark:{record}:{data.get('MessageID') or fallback_id}",
            note=f"a Postmark {record or 'unnamed'} record is not a bounce or complaint",
        )
    number = data.get("ID")
    event_id = f"postmark:{number}" if isinstance(number, int | str) and number else fallback_id
    bounce_type = str(data.get("Type") or ("SpamComplaint" if record == "SpamComplaint" else ""))
    kind = BounceKind.COMPLAINT if record == "SpamComplaint" else POSTMARK_KINDS.get(bounce_type)
    if kind is None:
        return ProviderEvent(
            "postmark",
            event_id,
            note=f"a Postmark {bounce_type or 'untyped'} bounce is not acted on",
        )
    address = _text(data, "Email", where=f"Postmark {record}")
    details = data.get("Details") or data.get("Description")
    report = Report(
        report_id=event_id,
        recipient=address,
        kind=kind,
        diagnostic=_diagnostic(details, f"Postmark {bounce_type}"),
    )
    return ProviderEvent("postmark", event_id, (report,))


def _mailgun(event: dict[str, Any], *, fallback_id: str) -> ProviderEvent:
    name = str(event.get("event") or "")
    event_id = f"mailgun:{event.get('id') or fallback_id}"
    headers = (
        event.get("message", {}).get("headers", {})
        if isinstance(event.get("message"), dict)
        else {}
    )
    original = (
        _bracketed(headers["message-id"])
        if isinstance(headers, dict) and isinstance(headers.get("message-id"), str)
        else None
    )
    if name == "complained":
        kind = BounceKind.COMPLAINT
    elif name == "failed":
        kind = BounceKind.HARD if event.get("severity") == "permanent" else BounceKind.SOFT
    else:
        return ProviderEvent(
            "mailgun", event_id, note=f"a Mailgun {name or 'unnamed'} event is not a bounce"
        )
    status = event.get("delivery-status") if isinstance(event.get("delivery-status"), dict) else {}
    assert isinstance(status, dict)
    code = status.get("code")
    report = Report(
        report_id=event_id,
        recipient=_text(event, "recipient", where=f"Mailgun {name} event"),
        kind=kind,
        status=str(code)[:20] if isinstance(code, int | str) and code else None,
        diagnostic=_diagnostic(
            status.get("message") or status.get("description"), f"Mailgun {name} event"
        ),
        original_message_id=original,
    )
    return ProviderEvent("mailgun", event_id, (report,))


def check_subscribe_url(url: str, *, hosts: re.Pattern[str] = SNS_HOSTS) -> str:
    """``url`` if it is an https URL on an SNS host; else :class:`ReportError`."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not hosts.match(parts.hostname or "") or parts.username:
        raise ReportError(
            f"SNS subscription confirmation: {url!r} is not an https URL of Amazon SNS",
            hint="only https://sns.<region>.amazonaws.com/ URLs are fetched; visit it yourself "
            "if it is genuine",
        )
    return url


def confirm_subscription(url: str, *, timeout: float = 10.0) -> None:
    """Visit a SubscribeURL (already checked); :class:`SourceError` when SNS does not answer 200."""
    try:
        answer = httpx.get(url, timeout=timeout, follow_redirects=False)
    except httpx.HTTPError as exc:
        raise SourceError(
            f"SNS subscription confirmation: cannot reach {urlsplit(url).hostname}: {exc}",
            hint="SNS sends the confirmation again; or visit the SubscribeURL yourself",
        ) from None
    if answer.status_code != 200:
        raise SourceError(
            f"SNS subscription confirmation: SNS answered {answer.status_code}",
            hint="the token may have expired: ask SNS to resend the confirmation",
        )
