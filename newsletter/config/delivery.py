"""The delivery's settings: batches, leases, retries and sending rates."""

from __future__ import annotations

from pydantic import BaseModel, Field


class DeliverySettings(BaseModel):
    """How workers claim, send, retry and pace deliveries."""

    batch_size: int = Field(
        default=200, ge=1, le=10_000, description="Deliveries a worker claims at once."
    )
    flush_size: int = Field(
        default=50,
        ge=1,
        le=1000,
        description="Sent marks written per database transaction; a crash re-sends at most these.",
    )
    lease_seconds: int = Field(
        default=300, ge=10, description="Seconds a claimed batch stays reserved for its worker."
    )
    max_attempts: int = Field(
        default=8, ge=1, description="Tries before a temporarily failing delivery is failed."
    )
    relay_per_minute: int = Field(
        default=0,
        ge=0,
        description="Most messages per minute to the SMTP relay, all workers together (0: no limit).",
    )
    rate_limits: dict[str, int] = Field(
        default_factory=dict,
        description="Most messages per minute per recipient domain, all workers together: [rate_limits] table.",
    )
    slowdown_minutes: int = Field(
        default=10, ge=1, description="How long a route stays slowed after it answered 421 or 451."
    )
    slowed_per_minute: int = Field(
        default=60, ge=1, description="Rate of a slowed route that has no configured limit."
    )
    retry_hours: int = Field(
        default=24,
        ge=1,
        description="Hours after which a temporarily failing delivery is failed, whatever its tries.",
    )
    outbox_max_attempts: int = Field(
        default=8,
        ge=1,
        description=(
            "Tries before a subscription mail (confirm, welcome, goodbye) is given up; the waits "
            "between tries double from 30 s up to 1 h."
        ),
    )
    outbox_lease_seconds: int = Field(
        default=120,
        ge=1,
        description=(
            "Seconds a subscription mail being sent stays reserved; a process that died while "
            "sending it leaves it to another after this."
        ),
    )
