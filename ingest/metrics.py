"""Prometheus metrics for the receiver and the flusher.

Under gunicorn every worker is its own process, so counters use prometheus-client's
multiprocess mode whenever ``PROMETHEUS_MULTIPROC_DIR`` is set (``mailpulse serve`` sets it to
a fresh folder per run); a scrape then adds up every worker's files. Spool depth, flush lag,
quarantine size and the flusher's event counts are read at scrape time from the flusher's
status file, so they are right whichever worker answers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from ingest.errors import SpoolUnavailable
from ingest.spool import Spool
from mailpulse.lake import read_status

REQUESTS = Counter(
    "mailpulse_requests",
    "Webhook requests by source and outcome (stored, or the error code answered).",
    ["source", "outcome"],
)
SIGNATURE_FAILURES = Counter(
    "mailpulse_signature_failures",
    "Requests refused by authentication, by source and reason.",
    ["source", "reason"],
)
RATE_LIMIT_STORAGE_ERRORS = Counter(
    "mailpulse_rate_limit_storage_errors",
    "Rate-limit checks the shared storage did not answer (the worker's own share applied).",
)
REQUEST_SECONDS = Histogram(
    "mailpulse_request_seconds",
    "Time to answer a webhook, including the durable write.",
    ["source"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0),
)


class FlusherStatusCollector(Collector):
    """Spool depth, flush lag and lake counts, read from disk at scrape time."""

    def __init__(self, spool: Spool, state_dir: Path) -> None:
        self.spool = spool
        self.state_dir = state_dir

    def collect(self) -> Iterator[Metric]:
        status = read_status(self.state_dir)
        try:
            waiting = float(self.spool.pending_bytes())
        except SpoolUnavailable:
            waiting = float("nan")  # the spool cannot be read; /readyz says why
        yield GaugeMetricFamily(
            "mailpulse_spool_bytes", "Bytes waiting in the spool, read now.", value=waiting
        )
        yield GaugeMetricFamily(
            "mailpulse_spool_pending_bytes",
            "Spooled bytes not yet flushed to the lake, as of the last flush.",
            value=status.get("pending_bytes", 0),
        )
        last = status.get("last_flush_at")
        lag = GaugeMetricFamily(
            "mailpulse_flush_lag_seconds",
            "Seconds since the flusher last finished a pass (NaN before the first).",
            value=(time.time() - last) if last else float("nan"),
        )
        yield lag
        yield GaugeMetricFamily(
            "mailpulse_quarantine_requests",
            "Payloads waiting in quarantine.",
            value=status.get("quarantine_rows", 0),
        )
        events = CounterMetricFamily(
            "mailpulse_events",
            "Events flushed, by source and outcome.",
            labels=["source", "outcome"],
        )
        for source, outcomes in sorted(status.get("events", {}).items()):
            for outcome, count in sorted(outcomes.items()):
                events.add_metric([source, outcome], count)
        yield events
        odd = CounterMetricFamily(
            "mailpulse_events_implausible_time",
            "Events stored with an occurred_at before 2000 or over a year after receipt.",
            labels=["source"],
        )
        for source, count in sorted(status.get("implausible_time", {}).items()):
            odd.add_metric([source], count)
        yield odd


def render(spool: Spool, state_dir: Path) -> bytes:
    """The text exposition for one scrape."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:  # one process (tests, a single worker): its own counters are the whole truth
        for collector in (REQUESTS, SIGNATURE_FAILURES, REQUEST_SECONDS):
            registry.register(collector)
    registry.register(FlusherStatusCollector(spool, state_dir))
    return generate_latest(registry)
