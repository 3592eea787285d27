"""The daily plan, and the APScheduler jobs that run it.

Every decision is made by :meth:`DailyPlan.tick` from the clock and the database alone, so a tick
can come late, twice, or from two hosts at once: each step is idempotent (one edition per date, one
delivery per subscriber). APScheduler only calls ``tick`` every minute (coalesced: a backlog of
missed runs is one run) and ``fetch`` through the day.

For an edition date (a day in ``NEWSLETTER_TIMEZONE``):

- its earliest send is the earliest local send time of its subscribers on that date (a reader in
  Tokyo gets Monday's edition on Sunday evening in Berlin);
- sources are fetched through the day, and once more just before the build;
- the edition is built ``build_lead_minutes`` before its earliest send, then queued with each
  subscriber's own send time; workers deliver each row when it is due;
- after downtime the missed steps run at once, as long as the send is within
  ``misfire_grace_minutes``; past that the edition, or the part of it that is late, is not sent, and
  the decision is logged;
- an edition that has not gone out ``deadline_minutes`` after its earliest send logs a warning.

Once an hour a tick also purges signups never confirmed within the confirmation window plus
``pending_grace_days``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from newsletter.bootstrap import App
from newsletter.delivery import ledger
from newsletter.errors import NewsletterError
from newsletter.models import REBUILDABLE, IssueStatus

log = logging.getLogger(__name__)

#: How often a tick purges unconfirmed signups (a cheap query, but not every minute).
PURGE_EVERY = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Plan:
    """The times of one edition date."""

    edition_date: date
    earliest_send: datetime
    build_at: datetime
    grace_until: datetime
    deadline: datetime


@dataclass
class DailyPlan:
    app: App
    clock: Callable[[], datetime]
    #: Decisions already logged, so a tick every minute does not repeat them.
    _said: set[tuple[date, str]] = field(default_factory=set)
    _purged_at: datetime | None = None

    def send_hours(self) -> list[tuple[str | None, int | None]]:
        """The distinct (time zone, chosen hour) pairs of the subscribers who get editions."""
        return self.app.sending.send_hours()

    def plan(
        self, edition_date: date, send_hours: list[tuple[str | None, int | None]] | None = None
    ) -> Plan:
        settings = self.app.settings
        combos = self.send_hours() if send_hours is None else send_hours
        times = [
            ledger.send_time_of(
                edition_date,
                zone,
                hour,
                default_zone=settings.timezone,
                default_clock=settings.send_clock,
            )
            for zone, hour in combos
        ]
        times.append(ledger.local_send_time(edition_date, settings.timezone, settings.send_clock))
        earliest = min(times)
        return Plan(
            edition_date=edition_date,
            earliest_send=earliest,
            build_at=earliest - timedelta(minutes=settings.build_lead_minutes),
            grace_until=earliest + timedelta(minutes=settings.misfire_grace_minutes),
            deadline=earliest + timedelta(minutes=settings.deadline_minutes),
        )

    def editions_in_view(self, now: datetime) -> list[date]:
        """Yesterday, today and tomorrow in the newsletter's zone (time zones stretch a date)."""
        today = now.astimezone(self.app.settings.zone).date()
        return [today - timedelta(days=1), today, today + timedelta(days=1)]

    def _say(self, edition_date: date, key: str, level: int, message: str, *args: object) -> None:
        if (edition_date, key) in self._said:
            return
        self._said.add((edition_date, key))
        log.log(level, message, *args)

    def tick(self, now: datetime | None = None) -> list[str]:
        """Run whatever is due now; return what was done (also logged)."""
        now = now or self.clock()
        done: list[str] = []
        send_hours = self.send_hours()  # the same for every edition in view: read once a tick
        yesterday, *current = self.editions_in_view(now)
        for edition_date in [yesterday, *current]:
            try:
                done += self._edition(
                    edition_date, now, send_hours, may_start=edition_date != yesterday
                )
            except NewsletterError as exc:
                log.error("edition %s: %s", edition_date, exc)
                done.append(f"{edition_date}: error: {exc.message}")
        try:
            purged = self.purge(now)
        except NewsletterError as exc:
            log.error("purging pending signups: %s", exc)
            purged = 0
        if purged:
            done.append(f"purged {purged} pending signups")
        return done

    def purge(self, now: datetime) -> int:
        """Purge unconfirmed signups past the window plus grace, at most once per ``PURGE_EVERY``."""
        if self._purged_at is not None and now - self._purged_at < PURGE_EVERY:
            return 0
        purged = self.app.pending_signups.purge(now=now)
        self._purged_at = now
        if purged:
            log.info("purged %d signups never confirmed", purged)
        return purged

    def _edition(
        self,
        edition_date: date,
        now: datetime,
        send_hours: list[tuple[str | None, int | None]],
        *,
        may_start: bool,
    ) -> list[str]:
        """Steps for one edition; yesterday's is only finished (its late rows expired), never started."""
        plan = self.plan(edition_date, send_hours)
        if now < plan.build_at:
            return []
        status = self.app.editions.status_of(edition_date)
        if status in (IssueStatus.SENT, IssueStatus.CANCELLED):
            return []
        if not may_start and (status is None or status in REBUILDABLE):
            return []
        done: list[str] = []
        if status is None or status in REBUILDABLE:
            if now > plan.grace_until:
                self._say(
                    edition_date,
                    "missed",
                    logging.WARNING,
                    "edition %s not sent: its send time %s passed more than %d minutes ago "
                    "(misfire grace); it will not go out late",
                    edition_date,
                    plan.earliest_send.isoformat(),
                    self.app.settings.misfire_grace_minutes,
                )
                return []
            if now > plan.earliest_send:
                self._say(
                    edition_date,
                    "late",
                    logging.WARNING,
                    "edition %s is late (due %s): building and sending it now, within the grace window",
                    edition_date,
                    plan.earliest_send.isoformat(),
                )
            if status is None:
                self.fetch(now, reason=f"before building {edition_date}")
                result = self.app.editions.build(edition_date=edition_date, now=now)
                log.info("edition %s built: %s", edition_date, result.subject)
                done.append(f"{edition_date}: built")
            queued = self.app.sending.enqueue(edition_date=edition_date, now=now)
            log.info("edition %s queued for %d subscribers", edition_date, queued.enqueued)
            done.append(f"{edition_date}: queued {queued.enqueued}")
        done += self._expire(edition_date, now)
        self._watch_deadline(plan, now)
        return done

    def _expire(self, edition_date: date, now: datetime) -> list[str]:
        """Rows that missed their own grace window are failed, never sent late."""
        grace = timedelta(minutes=self.app.settings.misfire_grace_minutes)
        expired = self.app.editions.expire_late(edition_date, due_before=now - grace)
        if not expired:
            return []
        log.warning(
            "edition %s: %d deliveries missed their send time by more than the grace window; "
            "they will not be sent",
            edition_date,
            expired,
        )
        return [f"{edition_date}: expired {expired}"]

    def _watch_deadline(self, plan: Plan, now: datetime) -> None:
        if now < plan.deadline:
            return
        late = self.app.editions.waiting_since(plan.edition_date, due_by=plan.earliest_send)
        if late:
            self._say(
                plan.edition_date,
                "deadline",
                logging.WARNING,
                "edition %s has not gone out by its deadline %s: %d deliveries are still waiting; "
                "is a worker running?",
                plan.edition_date,
                plan.deadline.isoformat(),
                late,
            )

    def fetch(self, now: datetime, *, reason: str = "scheduled") -> None:
        """Fetch the sources unless they were fetched in the last few minutes."""
        last = self.app.sources.last_fetched()
        if last is not None and now - last < timedelta(minutes=5):
            return
        outcomes = self.app.sources.fetch(now=now)
        failed = [outcome.name for outcome in outcomes if not outcome.ok]
        log.info(
            "fetched sources (%s): %d ok, %d failed%s",
            reason,
            len(outcomes) - len(failed),
            len(failed),
            f" ({', '.join(failed)})" if failed else "",
        )

    def read_unsubscribes(self) -> None:
        """Honour the requests in the unsubscribe mailbox, when one is configured."""
        mailbox = self.app.settings.unsubscribe_mailbox
        if mailbox is None:
            return
        try:
            self.app.mailboxes.process_unsubscribes(mailbox, now=self.clock())
        except NewsletterError as exc:
            log.error("unsubscribe mailbox %s: %s", mailbox, exc.message)


def build_scheduler(plan: DailyPlan, *, blocking: bool) -> object:
    """APScheduler with its jobs: the minute tick, the periodic fetch and, when an unsubscribe
    mailbox is configured, reading it (at start, then every few minutes)."""
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.schedulers.blocking import BlockingScheduler
    from apscheduler.triggers.interval import IntervalTrigger

    settings = plan.app.settings
    scheduler = (BlockingScheduler if blocking else BackgroundScheduler)(timezone=settings.zone)
    defaults = {"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600}
    scheduler.add_job(
        plan.tick, IntervalTrigger(minutes=1, timezone=settings.zone), id="tick", **defaults
    )
    scheduler.add_job(
        lambda: plan.fetch(plan.clock()),
        IntervalTrigger(minutes=settings.fetch_interval_minutes, timezone=settings.zone),
        id="fetch",
        **defaults,
    )
    if settings.unsubscribe_mailbox is not None:
        scheduler.add_job(
            plan.read_unsubscribes,
            IntervalTrigger(minutes=settings.unsubscribe_poll_minutes, timezone=settings.zone),
            id="unsubscribes",
            next_run_time=datetime.now(settings.zone),
            **defaults,
        )
    return scheduler
