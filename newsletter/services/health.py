"""Whether the database answers (the web's ``/healthz``)."""

from __future__ import annotations

import logging

from sqlalchemy import text

from newsletter.errors import NewsletterError
from newsletter.services.queued import Transactions

log = logging.getLogger(__name__)


def database_answers(database: Transactions) -> bool:
    """Run ``SELECT 1``; a failure is logged with its reason and answered False."""
    try:
        with database.transaction(readonly=True) as session:
            session.execute(text("SELECT 1"))
    except NewsletterError as exc:
        log.error("health check: %s", exc)
        return False
    return True
