"""The bodies sending providers post to a bounce webhook, written from their public documentation.

Each builder follows the example of the page named in its comment, with our addresses and
Message-IDs put in, so that a test can match the event to a delivery.
"""

from __future__ import annotations

import json
from typing import Any

TOPIC = "arn:aws:sns:eu-west-1:123456789012:newsletter-bounces"


def sns(
    message: dict[str, Any], *, message_id: str = "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324"
) -> str:
    """An SNS ``Notification`` carrying ``message`` as its JSON string.

    From "HTTP/HTTPS notification JSON format", Amazon SNS Developer Guide:
    https://docs.aws.amazon.com/sns/latest/dg/http-notification-json.html
    SNS posts it with ``Content-Type: text/plain; charset=UTF-8``.
    """
    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": message_id,
            "TopicArn": TOPIC,
            "Subject": None,
            "Message": json.dumps(message),
            "Timestamp": "2026-11-24T07:10:02.000Z",
            "SignatureVersion": "1",
            "Signature": "EXAMPLEpH+DcEwjAPg8O9mY8dReBSwksfg2S7WKQcikcNKWLQjwu6A4VbeS0QHVCkhRS7fUQvi2egU3N85",
            "SigningCertURL": "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem",
            "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn="
            + TOPIC
            + ":c9135db0-26c4-47ec-8998-413945fb5a96",
        }
    )


def sns_subscription(subscribe_url: str) -> str:
    """A ``SubscriptionConfirmation``, from "HTTP/HTTPS subscription confirmation JSON format":
    https://docs.aws.amazon.com/sns/latest/dg/http-subscription-confirmation-json.html
    """
    return json.dumps(
        {
            "Type": "SubscriptionConfirmation",
            "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
            "Token": "2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92768dd60a747ba6f3b",
            "TopicArn": TOPIC,
            "Message": f"You have chosen to subscribe to the topic {TOPIC}.\nTo confirm the "
            "subscription, visit the SubscribeURL included in this message.",
            "SubscribeURL": subscribe_url,
            "Timestamp": "2026-11-24T07:00:00.000Z",
            "SignatureVersion": "1",
            "Signature": "EXAMPLEpH+..",
            "SigningCertURL": "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem",
        }
    )


def _ses_mail(recipient: str, message_id: str | None) -> dict[str, Any]:
    """The ``mail`` object of an SES notification, with the original headers included."""
    headers = [
        {"name": "From", "value": "Crypto Daily <digest@example.com>"},
        {"name": "To", "value": recipient},
        {"name": "Subject", "value": "BTC holds 90k"},
    ]
    common: dict[str, Any] = {
        "from": ["Crypto Daily <digest@example.com>"],
        "to": [recipient],
        "subject": "BTC holds 90k",
    }
    if message_id is not None:
        headers.append({"name": "Message-ID", "value": message_id})
        common["messageId"] = message_id
    return {
        "timestamp": "2026-11-24T07:00:00.000Z",
        "source": "bounces@example.com",
        "sourceArn": "arn:aws:ses:eu-west-1:123456789012:identity/example.com",
        "sourceIp": "127.0.3.0",
        "sendingAccountId": "123456789012",
        # SES's own id of the mail, not the Message-ID header we wrote.
        "messageId": "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa0680-000000",
        "destination": [recipient],
        "headersTruncated": False,
        "headers": headers,
        "commonHeaders": common,
    }


def ses_bounce(
    recipient: str,
    *,
    message_id: str | None = None,
    bounce_type: str = "Permanent",
    feedback_id: str = "00000137860315fd-869464a4-8680-4114-98d3-716fe35851f9-000000",
) -> dict[str, Any]:
    """A bounce notification, from "Amazon SNS notification examples for Amazon SES", "Bounce
    notification with a DSN": https://docs.aws.amazon.com/ses/latest/dg/notification-examples.html
    """
    permanent = bounce_type == "Permanent"
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "reportingMTA": "dns; email.example.com",
            "bouncedRecipients": [
                {
                    "emailAddress": recipient,
                    "status": "5.1.1" if permanent else "4.2.2",
                    "action": "failed" if permanent else "delayed",
                    "diagnosticCode": f"smtp; 550 5.1.1 <{recipient}>... User"
                    if permanent
                    else "smtp; 452 4.2.2 Mailbox full",
                }
            ],
            "bounceSubType": "General" if permanent else "MailboxFull",
            "timestamp": "2026-11-24T07:05:38.237Z",
            "feedbackId": feedback_id,
            "remoteMtaIp": "127.0.2.0",
        },
        "mail": _ses_mail(recipient, message_id),
    }


def ses_complaint(recipient: str, *, message_id: str | None = None) -> dict[str, Any]:
    """A complaint notification with a feedback report, from "Amazon SNS notification examples
    for Amazon SES": https://docs.aws.amazon.com/ses/latest/dg/notification-examples.html
    """
    return {
        "notificationType": "Complaint",
        "complaint": {
            "userAgent": "AnyCompany Feedback Loop (V0.01)",
            "complainedRecipients": [{"emailAddress": recipient}],
            "complaintFeedbackType": "abuse",
            "arrivalDate": "2026-11-24T07:20:00.000Z",
            "timestamp": "2026-11-24T07:20:01.000Z",
            "feedbackId": "000001378603177f-18c07c78-fa81-4a58-9dd1-fedc3cb8f49a-000000",
        },
        "mail": _ses_mail(recipient, message_id),
    }


def ses_delivery(recipient: str) -> dict[str, Any]:
    """A delivery notification (not a bounce), from the same page."""
    return {
        "notificationType": "Delivery",
        "mail": _ses_mail(recipient, None),
        "delivery": {
            "timestamp": "2026-11-24T07:00:01.000Z",
            "processingTimeMillis": 546,
            "recipients": [recipient],
            "smtpResponse": "250 ok:  Message 64111812 accepted",
            "reportingMTA": "a8-70.smtp-out.amazonses.com",
            "remoteMtaIp": "127.0.2.0",
        },
    }


def postmark_bounce(
    recipient: str, *, bounce_id: int = 4323372036854775807, kind: str = "HardBounce"
) -> dict[str, Any]:
    """A Bounce webhook, from "Bounce webhook" of Postmark's developer docs
    (https://postmarkapp.com/developer/webhooks/bounce-webhook) and https://postmarkapp.com/email-webhooks.
    """
    return {
        "RecordType": "Bounce",
        "MessageStream": "broadcast",
        "ID": bounce_id,
        "Type": kind,
        "TypeCode": 1 if kind == "HardBounce" else 4096,
        "Name": "Hard bounce" if kind == "HardBounce" else "Soft bounce",
        "Tag": "daily",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Metadata": {"edition": "2026-11-24"},
        "ServerID": 23,
        "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": recipient,
        "From": "digest@example.com",
        "BouncedAt": "2026-11-24T07:28:10.2735393-04:00",
        "DumpAvailable": True,
        "Inactive": kind == "HardBounce",
        "CanActivate": True,
        "Subject": "BTC holds 90k",
        "Content": "",
    }


def postmark_spam_complaint(recipient: str, *, complaint_id: int = 42) -> dict[str, Any]:
    """A SpamComplaint webhook, from "Spam complaint webhook" of Postmark's developer docs:
    https://postmarkapp.com/developer/webhooks/spam-complaint-webhook
    """
    return {
        "RecordType": "SpamComplaint",
        "MessageStream": "broadcast",
        "ID": complaint_id,
        "Type": "SpamComplaint",
        "TypeCode": 512,
        "Name": "Spam complaint",
        "Tag": "daily",
        "MessageID": "00000000-0000-0000-0000-000000000000",
        "Metadata": {"edition": "2026-11-24"},
        "ServerID": 1234,
        "Description": "",
        "Details": "Test spam complaint details",
        "Email": recipient,
        "From": "digest@example.com",
        "BouncedAt": "2026-11-24T08:00:00Z",
        "DumpAvailable": True,
        "Inactive": True,
        "CanActivate": False,
        "Subject": "BTC holds 90k",
        "Content": "<Abuse report dump content>",
    }


def mailgun_failed(
    recipient: str, *, message_id: str, severity: str = "permanent"
) -> dict[str, Any]:
    """A ``failed`` event, from "Webhook Payloads" of Mailgun's user manual:
    https://documentation.mailgun.com/docs/mailgun/user-manual/webhooks/webhook-payloads
    (Mailgun writes the Message-ID without its angle brackets.)
    """
    return {
        "signature": {
            "timestamp": "1764054000",
            "token": "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0",
            "signature": "d2271d12299f6592d9d44cd9d250f0704e4674c30d79d07c47a66f95ce71cf55",
        },
        "event-data": {
            "event": "failed",
            "id": "G9Bn5sl1TC6nu79C8C0bwg",
            "timestamp": 1764054000.123456,
            "log-level": "error",
            "severity": severity,
            "reason": "bounce" if severity == "permanent" else "generic",
            "recipient": recipient,
            "recipient-domain": recipient.rsplit("@", 1)[1],
            "envelope": {
                "sender": "bounces@example.com",
                "transport": "smtp",
                "targets": recipient,
            },
            "message": {
                "headers": {
                    "to": recipient,
                    "message-id": message_id.strip("<>"),
                    "from": "digest@example.com",
                    "subject": "BTC holds 90k",
                },
                "size": 111,
            },
            "delivery-status": {
                "attempt-no": 1,
                "message": "No Such User Here",
                "code": 550 if severity == "permanent" else 452,
                "description": "",
                "session-seconds": 0.1,
            },
            "flags": {"is-routed": False, "is-authenticated": True, "is-test-mode": False},
        },
    }
