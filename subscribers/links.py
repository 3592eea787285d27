"""Who a personal link belongs to: the row with the link's id *and* its link key.

A link made before links carried a key (``LinkClaim.key is None``) is honoured only for a row that
was on the list then (``legacy_links``); ids are never reused, so it cannot reach anyone else.
"""

from __future__ import annotations

import secrets

from sqlalchemy.orm import Session

from subscribers.model import Subscriber
from subscribers.tokens import LinkClaim


def belongs_to(claim: LinkClaim, subscriber: Subscriber | None) -> bool:
    """Whether ``claim`` is a link of this very subscriber (not of an erased one with the same id)."""
    if subscriber is None or subscriber.id != claim.subscriber_id:
        return False
    if claim.key is None:
        return subscriber.legacy_links
    return bool(subscriber.link_key) and secrets.compare_digest(claim.key, subscriber.link_key)


def holder(session: Session, claim: LinkClaim, *, for_update: bool = False) -> Subscriber | None:
    """The subscriber a link belongs to, or None when that subscriber is gone (deleted, erased)."""
    # None, not False, without the lock: any with_for_update but None makes get() skip the
    # identity map and select the row again.
    subscriber = session.get(
        Subscriber, claim.subscriber_id, with_for_update=True if for_update else None
    )
    return subscriber if belongs_to(claim, subscriber) else None
