"""The quick start in one call: migrate, import the demo list, fetch, build, send, preview."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from newsletter import migrate
from newsletter.config import Settings
from newsletter.db import Database
from newsletter.delivery import ledger
from newsletter.editions import BuildResult
from newsletter.ingest import SourceOutcome
from newsletter.models import REBUILDABLE
from newsletter.services.editions import Editions
from newsletter.services.sending import Sending, SendOutcome
from newsletter.services.sources import Sources
from subscribers.import_file import read_csv
from subscribers.model import SubscriberStatus
from subscribers.service import count_subscribers
from subscribers.transfer import ImportReport, import_rows


@dataclass(frozen=True, slots=True)
class DemoReport:
    imported: ImportReport
    sources: list[SourceOutcome]
    built: BuildResult | None
    sent: SendOutcome
    preview: Path
    confirmed: int
    outbox: Path


@dataclass(frozen=True, slots=True)
class Demo:
    database: Database
    settings: Settings
    sources: Sources
    editions: Editions
    sending: Sending

    def run(
        self,
        *,
        subscribers_csv: Path,
        now: datetime,
        on_import: Callable[[int], None] | None = None,
        on_start: Callable[[int], None] | None = None,
        on_result: Callable[[ledger.Recorded], None] | None = None,
    ) -> DemoReport:
        settings = self.settings
        migrate.upgrade(self.database)
        imported = import_rows(
            self.database.transaction,
            read_csv(
                subscribers_csv,
                max_field_chars=settings.import_max_field_chars,
                max_line_chars=settings.import_max_line_chars,
            ),
            confirmed=True,
            source=f"import:{subscribers_csv.name}",
            progress=on_import,
        )
        sources = self.sources.fetch(now=now)
        edition_date = self.editions.today(now)
        status = self.editions.status_of(edition_date)
        built = None
        if status is None or status in REBUILDABLE:
            built = self.editions.build(edition_date=edition_date, now=now)
        sent = self.sending.send(
            edition_date=edition_date, now=now, on_start=on_start, on_result=on_result
        )
        preview = self.editions.preview(edition_date=edition_date)
        with self.database.transaction(readonly=True) as session:
            confirmed = count_subscribers(session)[SubscriberStatus.CONFIRMED]
        return DemoReport(
            imported=imported,
            sources=sources,
            built=built,
            sent=sent,
            preview=preview,
            confirmed=confirmed,
            outbox=settings.outbox_dir,
        )
