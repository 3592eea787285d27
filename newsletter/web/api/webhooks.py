"""``POST /api/webhooks/bounces``: bounces and complaints a sending provider posts.

Not part of the admin API: a provider holds this endpoint's secret (``NEWSLETTER_WEBHOOK_SECRET``,
as a bearer token or a basic-auth password), not the admin token. See ``docs/bounces.md``.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from newsletter.services import bounce_webhook
from newsletter.web.api.auth import require_webhook_secret
from newsletter.web.api.schemas import Problem, WebhookReceipt, WebhookRecipient
from newsletter.web.state import State

#: The largest event or report accepted (a DSN may carry the whole returned edition).
WEBHOOK_MAX_BYTES = 1_000_000

router = APIRouter(
    prefix="/api/webhooks",
    tags=["webhooks"],
    responses={
        401: {"model": Problem, "description": "No or a wrong webhook secret."},
        404: {"model": Problem, "description": "The webhook is off (no secret is set)."},
    },
)

BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "description": (
                    "An Amazon SNS message carrying an SES event, an SES event, a Postmark "
                    "Bounce or SpamComplaint webhook, or a Mailgun webhook."
                ),
            }
        },
        "text/plain": {
            "schema": {
                "type": "string",
                "description": "An SNS message (SNS posts JSON as text/plain), or a whole report.",
            }
        },
        "message/rfc822": {
            "schema": {
                "type": "string",
                "format": "binary",
                "description": "A whole DSN (RFC 3464) or feedback report (RFC 5965).",
            }
        },
    },
}


@router.post(
    "/bounces",
    response_model=WebhookReceipt,
    dependencies=[Depends(require_webhook_secret)],
    responses={
        400: {"model": Problem, "description": "The body is not an event or report we read."},
        413: {"description": "The body is larger than 1,000,000 bytes."},
        502: {"model": Problem, "description": "Amazon SNS did not confirm the subscription."},
    },
    summary="Bounces and complaints from Amazon SES (via SNS), Postmark, Mailgun or a raw report",
    openapi_extra={"requestBody": BODY},
)
async def bounces(request: Request, state: State) -> WebhookReceipt:
    body = await request.body()
    if len(body) > WEBHOOK_MAX_BYTES:
        raise HTTPException(413, f"the request body is larger than {WEBHOOK_MAX_BYTES} bytes")
    receipt = await run_in_threadpool(
        bounce_webhook.receive,
        state.database,
        body,
        content_type=request.headers.get("content-type", ""),
        confirm_sns=state.settings.webhook_confirm_sns,
        now=state.clock(),
    )
    return WebhookReceipt(
        provider=receipt.provider,
        event_id=receipt.event_id,
        result=receipt.result,
        recipients=[
            WebhookRecipient(recipient=r.recipient, kind=r.kind, outcome=r.outcome)
            for r in receipt.recipients
        ],
        note=receipt.note,
    )
