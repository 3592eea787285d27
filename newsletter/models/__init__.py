"""Tables of the pipeline: articles, market snapshots, issues (editions) and the deliveries ledger,
the outgoing webhooks, sponsor placements and the outbox of subscription mails, a module each.

The subscribers table lives in :mod:`subscribers.model`; all share one metadata, so one Alembic
history covers them. Importing this package defines every table.
"""

from __future__ import annotations

from newsletter.models.deliveries import (
    Bounce,
    BounceKind,
    Delivery,
    DeliveryCount,
    DeliveryStatus,
    RelayCount,
    RouteRate,
)
from newsletter.models.editions import (
    REBUILDABLE,
    Article,
    Issue,
    IssueArticle,
    IssueStatus,
    IssueVariant,
    MarketGlobal,
    MarketSnapshot,
    SentimentReading,
    SourceState,
)
from newsletter.models.outbox import OutboxMail, OutboxStatus
from newsletter.models.sponsors import SponsorClick, SponsorPlacement
from newsletter.models.webhooks import WebhookDelivery, WebhookEndpoint, WebhookStatus

__all__ = [
    "REBUILDABLE",
    "Article",
    "Bounce",
    "BounceKind",
    "Delivery",
    "DeliveryCount",
    "DeliveryStatus",
    "Issue",
    "IssueArticle",
    "IssueStatus",
    "IssueVariant",
    "MarketGlobal",
    "MarketSnapshot",
    "OutboxMail",
    "OutboxStatus",
    "RelayCount",
    "RouteRate",
    "SentimentReading",
    "SourceState",
    "SponsorClick",
    "SponsorPlacement",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookStatus",
]
