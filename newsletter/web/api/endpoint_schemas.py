"""The bodies of the outgoing webhooks' endpoints in the admin API (``/api/webhooks/endpoints``)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field, field_validator

from newsletter.services.webhooks import Endpoint
from newsletter.web.api.schemas import plain
from newsletter.webhooks.events import WebhookEvent


class EndpointOut(BaseModel):
    id: int
    url: str
    description: str
    events: list[WebhookEvent]
    enabled: bool
    disabled_at: datetime | None
    disabled_reason: str | None = Field(
        description="Why it is disabled: by an operator, or after a run of failed attempts."
    )
    consecutive_failures: int
    retry_at: datetime | None = Field(description="No attempt to it before then (backoff).")
    last_success_at: datetime | None
    last_error: str | None
    created_at: datetime
    pending: int = Field(description="Messages waiting to be delivered.")
    delivered: int
    oldest_pending_at: datetime | None

    @classmethod
    def of(cls, endpoint: Endpoint) -> EndpointOut:
        return cls(
            id=endpoint.id,
            url=endpoint.url,
            description=endpoint.description,
            events=[WebhookEvent(event) for event in endpoint.events],
            enabled=endpoint.enabled,
            disabled_at=endpoint.disabled_at,
            disabled_reason=endpoint.disabled_reason,
            consecutive_failures=endpoint.consecutive_failures,
            retry_at=endpoint.retry_at,
            last_success_at=endpoint.last_success_at,
            last_error=endpoint.last_error,
            created_at=endpoint.created_at,
            pending=endpoint.pending,
            delivered=endpoint.delivered,
            oldest_pending_at=endpoint.oldest_pending_at,
        )


class NewEndpoint(BaseModel):
    url: str = Field(min_length=1, max_length=2000, description="An http:// or https:// URL.")
    events: list[WebhookEvent] | None = Field(
        default=None, max_length=20, description="The events to receive (default: all)."
    )
    description: str | None = Field(default=None, max_length=200)

    _text = field_validator("url", "description")(plain)


class EndpointChange(BaseModel):
    """Only what is given changes."""

    url: str | None = Field(default=None, min_length=1, max_length=2000)
    events: list[WebhookEvent] | None = Field(default=None, max_length=20)
    description: str | None = Field(default=None, max_length=200)
    enabled: bool | None = None

    _text = field_validator("url", "description")(plain)


class CreatedEndpoint(BaseModel):
    endpoint: EndpointOut
    secret: str = Field(description="The signing secret (whsec_…): give it to the receiver.")


class EndpointSecret(BaseModel):
    secret: str


class RemovedEndpoint(BaseModel):
    dropped: int = Field(description="Undelivered messages dropped with the endpoint.")


class EndpointTest(BaseModel):
    message_id: str
    delivered: bool
    status: int | None = Field(description="The HTTP status of the answer (null: no answer).")
    error: str | None
