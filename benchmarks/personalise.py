"""Personalising a prebuilt message versus building each message with the email package.

Builds today's demo edition once, then times, in the same run, (a) ``PreparedMessage.personalise``
(byte substitution into MIME prebuilt once per variant) and (b) the baseline: a fresh
``EmailMessage`` per recipient with the same headers and parts, serialised with ``as_bytes``.
Prints the cost of each per message and the ratio b/a. Run with ``make bench``.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import sample_values  # noqa: E402

from newsletter import personal  # noqa: E402
from newsletter.bootstrap import bootstrap  # noqa: E402
from newsletter.config import load_settings  # noqa: E402
from newsletter.delivery.message import (  # noqa: E402
    DATE,
    MESSAGE_ID,
    RECIPIENT,
    MessageHeaders,
    prepare_message,
)
from newsletter.editions import get_issue, variant  # noqa: E402
from newsletter.migrate import upgrade  # noqa: E402

MESSAGES = 2_000
ROUNDS = 5


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        settings = load_settings(
            ROOT / "examples" / "demo.toml",
            database_url=f"sqlite:///{scratch}/bench.db",
            outbox_dir=Path(scratch) / "outbox",
        )
        app = bootstrap(settings)
        upgrade(app.database)
        now = datetime(2026, 11, 24, 6, 30, tzinfo=UTC)
        app.sources.fetch(now=now)
        app.editions.build(edition_date=date(2026, 11, 24), now=now)
        with app.database.transaction(readonly=True) as session:
            issue = get_issue(session, date(2026, 11, 24))
            assert issue is not None
            stored = variant(session, issue)
            html, text, subject = stored.html, stored.text, issue.subject
        app.close()

    headers = MessageHeaders(
        sender=settings.sender,
        subject=subject,
        list_id=settings.list_id_value,
        list_name=settings.newsletter_name,
        unsubscribe_mailto=settings.unsubscribe_address,
    )
    prepared = prepare_message(headers, html_body=html, text_body=text)
    inputs = [sample_values(number) for number in range(MESSAGES)]

    def ours() -> int:
        return sum(len(prepared.personalise(values)) for values in inputs)

    def baseline() -> int:
        total = 0
        for values in inputs:
            message = EmailMessage(policy=SMTP)
            message["From"] = settings.sender
            message["To"] = values[RECIPIENT]
            message["Subject"] = subject
            message["Date"] = values[DATE]
            message["Message-ID"] = values[MESSAGE_ID]
            message["List-Id"] = f"{settings.newsletter_name} <{settings.list_id_value}>"
            message["List-Unsubscribe"] = f"<{values[personal.UNSUBSCRIBE_URL]}>"
            message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
            message.set_content(personal.fill(text, values), cte="quoted-printable")
            message.add_alternative(
                personal.fill(html, values), subtype="html", cte="quoted-printable"
            )
            total += len(message.as_bytes())
        return total

    def best(function: Callable[[], int]) -> tuple[float, float]:
        timings = []
        for _ in range(ROUNDS):
            started = time.perf_counter()
            function()
            timings.append((time.perf_counter() - started) / MESSAGES)
        return min(timings), statistics.median(timings)

    size = len(prepared.personalise(inputs[0]))
    ours_best, ours_median = best(ours)
    base_best, base_median = best(baseline)
    print(f"message size: {size / 1024:.1f} KiB, {MESSAGES} messages x {ROUNDS} rounds")
    print(
        f"prebuilt + personalise : {ours_best * 1e6:9.1f} µs/message (median {ours_median * 1e6:.1f})"
    )
    print(
        f"EmailMessage per person: {base_best * 1e6:9.1f} µs/message (median {base_median * 1e6:.1f})"
    )
    print(f"ratio baseline/ours    : {base_best / ours_best:9.1f}x")


if __name__ == "__main__":
    main()
