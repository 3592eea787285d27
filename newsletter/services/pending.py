"""Purging signups never confirmed, as the scheduler runs it once an hour."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from newsletter.config import Settings
from newsletter.db import Database
from newsletter.services import privacy


@dataclass(frozen=True, slots=True)
class PendingSignups:
    database: Database
    settings: Settings

    def purge(self, *, now: datetime, dry_run: bool = False) -> int:
        """Purge (or, with ``dry_run``, count) the signups unconfirmed past the confirmation window
        plus ``pending_grace_days``."""
        settings = self.settings
        with self.database.transaction() as session:
            return privacy.purge_pending(
                session,
                now=now,
                confirm_hours=settings.confirm_token_hours,
                grace_days=settings.pending_grace_days,
                dry_run=dry_run,
            )
