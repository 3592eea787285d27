"""Metrics in the Prometheus text format (version 0.0.4), without a client library.

Counters and histograms live in this process (each worker process reports its own, as Prometheus
expects from several targets); the subscriber and edition gauges are read from the database at scrape
time, so they are the same whichever process answers.

Anyone may scrape ``/metrics``, so it shows nothing that tells whether an address is on the list: the
form answers every address alike, and so does the public scrape (signups are counted as accepted, not
as new or already there; subscription mails by outcome, not by kind; no subscriber counts). A scrape
with the admin bearer token adds those details (:meth:`Metrics.render` with ``detailed``).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from newsletter.sources.validation import rejection_counts

Labels = tuple[tuple[str, str], ...]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels, extra: Labels = ()) -> str:
    pairs = labels + extra
    if not pairs:
        return ""
    return "{" + ",".join(f'{name}="{_escape(value)}"' for name, value in pairs) + "}"


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


@dataclass
class Counter:
    name: str
    help: str
    values: dict[Labels, float] = field(default_factory=dict)

    def inc(self, labels: Mapping[str, str], amount: float = 1.0) -> None:
        key = tuple(sorted(labels.items()))
        self.values[key] = self.values.get(key, 0.0) + amount

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} counter"
        for labels, value in sorted(self.values.items()):
            yield f"{self.name}{_labels(labels)} {_number(value)}"

    def folded(self, label: str, fold: Mapping[str, str]) -> Counter:
        """A copy with the values of ``label`` renamed by ``fold`` (and then added up)."""
        out = Counter(self.name, self.help)
        for labels, value in self.values.items():
            renamed = tuple(
                (key, fold.get(item, item) if key == label else item) for key, item in labels
            )
            out.values[renamed] = out.values.get(renamed, 0.0) + value
        return out

    def without(self, label: str, *, name: str, help_text: str) -> Counter:
        """A copy under ``name`` with ``label`` left out (its values added up)."""
        out = Counter(name, help_text)
        for labels, value in self.values.items():
            kept = tuple(pair for pair in labels if pair[0] != label)
            out.values[kept] = out.values.get(kept, 0.0) + value
        return out


# Signup outcomes that depend on what the list holds: shown only to the admin scrape.
LIST_OUTCOMES = dict.fromkeys(("new", "already", "pending", "resubscribed"), "accepted")


@dataclass
class Histogram:
    name: str
    help: str
    buckets: tuple[float, ...] = LATENCY_BUCKETS
    series: dict[Labels, list[float]] = field(
        default_factory=dict
    )  # bucket counts, then sum, count

    def observe(self, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        row = self.series.get(key)
        if row is None:
            row = self.series[key] = [0.0] * (len(self.buckets) + 2)
        for index, bound in enumerate(self.buckets):
            if value <= bound:
                row[index] += 1
        row[-2] += value
        row[-1] += 1

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        for labels, row in sorted(self.series.items()):
            for index, bound in enumerate(self.buckets):
                le = (("le", _number(bound)),)
                yield f"{self.name}_bucket{_labels(labels, le)} {_number(row[index])}"
            yield f"{self.name}_bucket{_labels(labels, (('le', '+Inf'),))} {_number(row[-1])}"
            yield f"{self.name}_sum{_labels(labels)} {row[-2]!r}"
            yield f"{self.name}_count{_labels(labels)} {_number(row[-1])}"


def gauge(name: str, help_text: str, values: Mapping[Labels, float]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
    lines += [f"{name}{_labels(labels)} {_number(value)}" for labels, value in values.items()]
    return lines


class Metrics:
    """The web app's own counters. Thread-safe: handlers run in a thread pool."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started = time.time()
        self.requests = Counter(
            "newsletter_http_requests_total", "HTTP requests answered, by route, method and status."
        )
        self.latency = Histogram(
            "newsletter_http_request_duration_seconds", "Time to answer, by route (seconds)."
        )
        self.signups = Counter(
            "newsletter_signups_total",
            "Subscribe form submissions, by outcome (accepted, invalid, csrf, honeypot, rejected).",
        )
        self.limited = Counter(
            "newsletter_rate_limited_total", "Requests refused by a rate limit, by scope."
        )
        self.mails = Counter(
            "newsletter_subscription_mails_total", "Subscription mails, by kind and outcome."
        )
        self.unsubscribes = Counter(
            "newsletter_unsubscribes_total", "Unsubscribe requests, by channel and outcome."
        )

    def count(self, counter: Counter, **labels: str) -> None:
        with self._lock:
            counter.inc(labels)

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests.inc({"route": route, "method": method, "status": str(status)})
            self.latency.observe(seconds, route=route)

    def render(self, extra: Iterable[str] = (), *, detailed: bool = False) -> str:
        """The text of a scrape; ``detailed`` (the admin's scrape) adds what tells addresses apart."""
        with self._lock:
            lines: list[str] = []
            public = (
                self.requests,
                self.latency,
                self.signups.folded("outcome", LIST_OUTCOMES),
                self.limited,
                self.mails.without(
                    "kind",
                    name=self.mails.name,
                    help_text="Subscription mails, by outcome.",
                ),
                self.unsubscribes,
            )
            admin = (
                Counter(
                    "newsletter_signup_outcomes_total",
                    "Subscribe form submissions, by outcome (admin scrape only).",
                    dict(self.signups.values),
                ),
                Counter(
                    "newsletter_subscription_mails_by_kind_total",
                    "Subscription mails, by kind and outcome (admin scrape only).",
                    dict(self.mails.values),
                ),
            )
            for metric in (*public, *(admin if detailed else ())):
                lines += metric.render()
            lines += gauge(
                "newsletter_web_start_time_seconds",
                "When this web process started (Unix time).",
                {(): self.started},
            )
        lines += market_rejections()
        lines += extra
        return "\n".join(lines) + "\n"


def market_rejections() -> list[str]:
    """Market values this process refused (``sources.validation``), by part, field and reason."""
    name = "newsletter_market_values_rejected_total"
    lines = [
        f"# HELP {name} Market data values refused as implausible, by part, field and reason.",
        f"# TYPE {name} counter",
    ]
    for (part, field_name, reason), count in sorted(rejection_counts().items()):
        labels = (("part", part), ("field", field_name), ("reason", reason))
        lines.append(f"{name}{_labels(labels)} {_number(count)}")
    return lines


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
