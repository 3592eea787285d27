"""The quick start in one call: migrate, import the demo list, fetch, build, send, preview."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from newsletter import migrate, pipeline
from newsletter.bootstrap import App
from newsletter.delivery import ledger
from newsletter.editions import BuildResult, get_issue
from newsletter.ingest import SourceOutcome
from newsletter.models import REBUILDABLE
from subscribers.model import SubscriberStatus
from subscribers.service import ImportReport, count_subscribers, import_rows, read_csv


@dataclass(frozen=True, slots=True)
class DemoReport:
    imported: ImportReport
    sources: list[SourceOutcome]
    built: BuildResult | None
    sent: pipeline.SendOutcome
    preview: Path
    confirmed: int
    outbox: Path


def run_demo(
    app: App,
    *,
    subscribers_csv: Path,
    now: datetime,
    on_import: Callable[[int], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    on_result: Callable[[ledger.Recorded], None] | None = None,
) -> DemoReport:
    migrate.upgrade(app.database)
    imported = import_rows(
        app.database.transaction,
        read_csv(
            subscribers_csv,
            max_field_chars=app.settings.import_max_field_chars,
            max_line_chars=app.settings.import_max_line_chars,
        ),
        confirmed=True,
        source=f"import:{subscribers_csv.name}",
        progress=on_import,
    )
    sources = pipeline.fetch(app, now=now)
    edition_date = pipeline.today(app, now)
    with app.database.transaction(readonly=True) as session:
        issue = get_issue(session, edition_date)
    built = None
    if issue is None or issue.status in REBUILDABLE:
        built = pipeline.build(app, edition_date=edition_date, now=now)
    sent = pipeline.send(
        app, edition_date=edition_date, now=now, on_start=on_start, on_result=on_result
    )
    preview = pipeline.preview(app, edition_date=edition_date)
    with app.database.transaction(readonly=True) as session:
        confirmed = count_subscribers(session)[SubscriberStatus.CONFIRMED]
    return DemoReport(
        imported=imported,
        sources=sources,
        built=built,
        sent=sent,
        preview=preview,
        confirmed=confirmed,
        outbox=app.settings.outbox_dir,
    )
