"""Metrics in the Prometheus text format (version 0.0.4), with ``prometheus-client``.

Counters and histograms live in this process (each worker process reports its own, as Prometheus
expects from several targets); the subscriber, edition and delivery gauges are read from the database
at collection time by a custom collector (:class:`DatabaseGauges`, over
:func:`newsletter.services.metrics.read_gauges`), so they are the same whichever process answers and
cost nothing between scrapes. Each app has its own registries, never the library's global one.

Anyone may scrape ``/metrics``, so it shows nothing that tells whether an address is on the list: the
form answers every address alike, and so does the public scrape (signups are counted as accepted, not
as new or already there; subscription mails by outcome, not by kind; no subscriber counts). A scrape
with the admin bearer token adds those details (:meth:`Metrics.render` with ``detailed``): the admin
registry holds every public collector and the detailed ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from newsletter.services import metrics as figures
from newsletter.sources.validation import rejection_counts

#: The media type of a scrape: the text format ``generate_latest`` writes.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# Signup outcomes that depend on what the list holds: shown only to the admin scrape.
LIST_OUTCOMES = dict.fromkeys(("new", "already", "pending", "resubscribed"), "accepted")

#: The database figures of one scrape; the argument is ``detailed`` (the admin's scrape).
GaugeReader = Callable[[bool], Sequence[figures.Gauge]]


class Tally:
    """One thing counted in this process: shown to anyone with some labels folded or left out,
    and whole to the admin scrape (``detailed``), when the two differ."""

    def __init__(
        self,
        public: Counter,
        *,
        fold: Mapping[str, Mapping[str, str]] | None = None,
        leave_out: tuple[str, ...] = (),
        detailed: Counter | None = None,
    ) -> None:
        self.public = public
        self.detailed = detailed
        self._fold = fold or {}
        self._leave_out = leave_out

    def inc(self, labels: Mapping[str, str]) -> None:
        shown = {
            key: self._fold.get(key, {}).get(value, value)
            for key, value in labels.items()
            if key not in self._leave_out
        }
        self.public.labels(**shown).inc()
        if self.detailed is not None:
            self.detailed.labels(**labels).inc()


class DatabaseGauges:
    """A collector that reads the database figures when, and only when, a scrape collects."""

    def __init__(self, read: GaugeReader, *, detailed: bool) -> None:
        self._read = read
        self._detailed = detailed

    def collect(self) -> Iterable[Metric]:
        for gauge in self._read(self._detailed):
            family = GaugeMetricFamily(gauge.name, gauge.help, labels=list(gauge.labels))
            for values, value in gauge.values.items():
                family.add_metric(list(values), value)
            yield family


class MarketRejections:
    """Market values this process refused (``sources.validation``), by part, field and reason."""

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(
            "newsletter_market_values_rejected_total",
            "Market data values refused as implausible, by part, field and reason.",
            labels=["part", "field", "reason"],
        )
        for (part, field_name, reason), count in sorted(rejection_counts().items()):
            family.add_metric([part, field_name, reason], count)
        yield family

    def describe(self) -> Iterable[Metric]:
        return self.collect()


def _no_gauges(detailed: bool) -> Sequence[figures.Gauge]:
    return ()


class Metrics:
    """The web app's registries: a public one, and the admin's (the public collectors and more).

    Thread-safe (prometheus-client locks each value): handlers run in a thread pool.
    """

    def __init__(self, *, database: GaugeReader = _no_gauges) -> None:
        # A ``_created`` series for every label set would double the scrape and, as a new label set
        # appears, show a timestamp only the first time: not what these counters are for.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.started = time.time()
        self.requests = Counter(
            "newsletter_http_requests_total",
            "HTTP requests answered, by route, method and status.",
            ("method", "route", "status"),
            registry=None,
        )
        self.latency = Histogram(
            "newsletter_http_request_duration_seconds",
            "Time to answer, by route (seconds).",
            ("route",),
            buckets=LATENCY_BUCKETS,
            registry=None,
        )
        self.signups = Tally(
            _counter(
                "newsletter_signups_total",
                "Subscribe form submissions, by outcome "
                "(accepted, invalid, csrf, honeypot, rejected).",
                "outcome",
            ),
            fold={"outcome": LIST_OUTCOMES},
            detailed=_counter(
                "newsletter_signup_outcomes_total",
                "Subscribe form submissions, by outcome (admin scrape only).",
                "outcome",
            ),
        )
        self.limited = Tally(
            _counter(
                "newsletter_rate_limited_total",
                "Requests refused by a rate limit, by scope.",
                "scope",
            )
        )
        self.mails = Tally(
            _counter(
                "newsletter_subscription_mails_total", "Subscription mails, by outcome.", "outcome"
            ),
            leave_out=("kind",),
            detailed=_counter(
                "newsletter_subscription_mails_by_kind_total",
                "Subscription mails, by kind and outcome (admin scrape only).",
                "kind",
                "outcome",
            ),
        )
        self.unsubscribes = Tally(
            _counter(
                "newsletter_unsubscribes_total",
                "Unsubscribe requests, by channel and outcome.",
                "outcome",
            )
        )
        start = Gauge(
            "newsletter_web_start_time_seconds",
            "When this web process started (Unix time).",
            registry=None,
        )
        start.set(self.started)
        tallies = (self.signups, self.limited, self.mails, self.unsubscribes)
        public: list[Collector] = [self.requests, self.latency, *(t.public for t in tallies)]
        detailed = [t.detailed for t in tallies if t.detailed is not None]
        common: list[Collector] = [start, MarketRejections()]
        self.public = _registry(*public, *common, DatabaseGauges(database, detailed=False))
        self.admin = _registry(*public, *detailed, *common, DatabaseGauges(database, detailed=True))

    def count(self, tally: Tally, **labels: str) -> None:
        tally.inc(labels)

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(method=method, route=route, status=str(status)).inc()
        self.latency.labels(route=route).observe(seconds)

    def render(self, *, detailed: bool = False) -> str:
        """The text of a scrape; ``detailed`` (the admin's scrape) adds what tells addresses apart."""
        return generate_latest(self.admin if detailed else self.public).decode()


def _counter(name: str, help_text: str, *labels: str) -> Counter:
    return Counter(name, help_text, labels, registry=None)


def _registry(*collectors: Collector) -> CollectorRegistry:
    registry = CollectorRegistry()
    for collector in collectors:
        registry.register(collector)
    return registry


class RequestMetrics:
    """ASGI middleware: counts each response by its route template (never the raw path)."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.request(
                template, scope.get("method", "GET"), status, time.perf_counter() - started
            )
