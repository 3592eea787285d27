"""Reading mailboxes as use cases: bounce and complaint reports, and mailed unsubscribe requests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from newsletter.db import Database
from newsletter.delivery.bounces import BounceSummary, process_mailbox
from newsletter.delivery.unsubscribes import UnsubscribeSummary, process_unsubscribe_mailbox
from subscribers.tokens import TokenSigner


@dataclass(frozen=True, slots=True)
class Mailboxes:
    database: Database
    signer: Callable[[], TokenSigner]

    def process_bounces(self, path: Path, *, now: datetime) -> BounceSummary:
        """Apply the DSNs and feedback reports of a Maildir or mbox; suppress hard bounces."""
        return process_mailbox(self.database, path, now=now)

    def process_unsubscribes(self, path: Path, *, now: datetime) -> UnsubscribeSummary:
        """Honour the unsubscribe requests of a Maildir or mbox, each message once."""
        return process_unsubscribe_mailbox(self.database, self.signer(), path, now=now)
