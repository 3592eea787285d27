"""The /metrics registries: the database is read when a scrape collects, and only then; the public
registry holds no family that could tell addresses apart, the admin's holds every public one too.

The scrape itself, against a real app and database, is in tests/test_metrics_scrape.py and
tests/test_web.py; these check the registry the exposition is built from.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client.parser import text_string_to_metric_families

from newsletter.services.metrics import Gauge
from newsletter.web.metrics import Metrics

ADMIN_ONLY = {
    "newsletter_signup_outcomes",
    "newsletter_subscription_mails_by_kind",
    "newsletter_subscribers",
}


class Reader:
    """Stands for the database: records each read, answers one gauge."""

    def __init__(self) -> None:
        self.reads: list[bool] = []

    def __call__(self, detailed: bool) -> Sequence[Gauge]:
        self.reads.append(detailed)
        gauges = [Gauge("newsletter_editions", "Editions by status.", ("status",), {("sent",): 2})]
        if detailed:
            gauges.append(
                Gauge("newsletter_subscribers", "Subscribers by status.", ("status",), {("x",): 1})
            )
        return gauges


def families(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        found[family.name] = {
            tuple(sorted(sample.labels.items())): sample.value for sample in family.samples
        }
    return found


def test_the_database_is_read_at_each_scrape_and_never_in_between() -> None:
    reader = Reader()
    metrics = Metrics(database=reader)
    metrics.count(metrics.signups, outcome="new")
    metrics.request("/subscribe", "POST", 303, 0.01)
    assert reader.reads == []  # building the registries and counting read nothing
    metrics.render()
    metrics.render(detailed=True)
    assert reader.reads == [False, True]


def test_the_public_registry_folds_what_the_admin_registry_shows_whole() -> None:
    metrics = Metrics(database=Reader())
    for outcome in ("new", "already", "invalid"):
        metrics.count(metrics.signups, outcome=outcome)
    metrics.count(metrics.mails, kind="confirm", outcome="sent")
    metrics.count(metrics.mails, kind="welcome", outcome="sent")
    public = families(metrics.render())
    admin = families(metrics.render(detailed=True))
    assert not ADMIN_ONLY & public.keys()
    assert admin.keys() >= ADMIN_ONLY
    assert public.keys() <= admin.keys()
    assert public["newsletter_signups"] == {
        (("outcome", "accepted"),): 2.0,
        (("outcome", "invalid"),): 1.0,
    }
    assert public["newsletter_subscription_mails"] == {(("outcome", "sent"),): 2.0}
    assert admin["newsletter_signup_outcomes"] == {
        (("outcome", "new"),): 1.0,
        (("outcome", "already"),): 1.0,
        (("outcome", "invalid"),): 1.0,
    }
    assert admin["newsletter_subscription_mails_by_kind"] == {
        (("kind", "confirm"), ("outcome", "sent")): 1.0,
        (("kind", "welcome"), ("outcome", "sent")): 1.0,
    }
    assert public["newsletter_editions"] == {(("status", "sent"),): 2.0}


def test_two_apps_in_one_process_count_apart() -> None:
    first, second = Metrics(), Metrics()
    first.count(first.unsubscribes, outcome="unsubscribed")
    assert families(first.render())["newsletter_unsubscribes"] == {
        (("outcome", "unsubscribed"),): 1.0
    }
    assert families(second.render())["newsletter_unsubscribes"] == {}


def test_no_created_series_a_stranger_could_date_signups_by() -> None:
    metrics = Metrics()
    metrics.count(metrics.signups, outcome="new")
    assert "_created" not in metrics.render(detailed=True)
