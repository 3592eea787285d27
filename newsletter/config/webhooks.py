"""The outgoing webhooks' settings: timeouts, the retry schedule, when an endpoint is disabled."""

from __future__ import annotations

from pydantic import BaseModel, Field


class WebhookSettings(BaseModel):
    """How signed event messages are posted to the registered endpoints (docs/webhooks.md)."""

    webhook_timeout: float = Field(
        default=10.0,
        gt=0,
        le=120,
        description="Seconds an endpoint has to answer a webhook message before the attempt fails.",
    )
    webhook_retry_seconds: int = Field(
        default=30,
        ge=1,
        description="Wait before the first retry of a failed webhook message; it doubles after each failure.",
    )
    webhook_retry_max_seconds: int = Field(
        default=3600,
        ge=1,
        description="Longest wait between two attempts of a webhook message (the cap of the doubling).",
    )
    webhook_failure_limit: int = Field(
        default=30,
        ge=1,
        description="Failed attempts in a row after which a webhook endpoint is disabled.",
    )
    webhook_batch_size: int = Field(
        default=50, ge=1, le=1000, description="Webhook messages a worker claims at once."
    )
    webhook_keep_days: int = Field(
        default=30,
        ge=1,
        description="Days a delivered webhook message is kept (for 'webhooks show' and audits).",
    )
