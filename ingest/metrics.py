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
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from ingest.errors import SpoolUnavailable
from ingest.spool import Spool
from mailpulse.lake import ACTIONS_STATUS_FILE, read_status

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
        yield from _flusher_work(status, self.spool)
        odd = CounterMetricFamily(
            "mailpulse_events_implausible_time",
            "Events stored with an occurred_at before 2000 or over a year after receipt.",
            labels=["source"],
        )
        for source, count in sorted(status.get("implausible_time", {}).items()):
            odd.add_metric([source], count)
        yield odd


class ActionsStatusCollector(Collector):
    """The actions' outcomes, attempts, waiting rows and delivery latency, read from the
    dispatcher's snapshot at scrape time (it runs in ``serve``, not in a worker)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    def collect(self) -> Iterator[Metric]:
        status = read_status(self.state_dir, ACTIONS_STATUS_FILE)
        if not status:
            return
        outcomes = CounterMetricFamily(
            "mailpulse_actions",
            "Action attempts by action and outcome.",
            labels=["action", "outcome"],
        )
        for action, counts in sorted(status.get("outcomes", {}).items()):
            for outcome, count in sorted(counts.items()):
                outcomes.add_metric([action, outcome], count)
        yield outcomes
        attempts = CounterMetricFamily(
            "mailpulse_action_attempts", "Delivery attempts by action.", labels=["action"]
        )
        for action, count in sorted(status.get("attempts", {}).items()):
            attempts.add_metric([action], count)
        yield attempts
        yield from _action_gauges(status.get("actions", {}))
        yield _latency(status.get("latency", {}))


def _action_gauges(actions: dict[str, dict[str, Any]]) -> Iterator[Metric]:
    now = time.time()
    pending = GaugeMetricFamily(
        "mailpulse_actions_pending", "Actions waiting or in flight, by action.", labels=["action"]
    )
    dead = GaugeMetricFamily(
        "mailpulse_actions_dead", "Dead-lettered actions kept, by action.", labels=["action"]
    )
    oldest = GaugeMetricFamily(
        "mailpulse_action_oldest_pending_seconds",
        "Age of the oldest action not yet delivered (0 when none waits).",
        labels=["action"],
    )
    for action, row in sorted(actions.items()):
        pending.add_metric([action], row.get("pending", 0) + row.get("sending", 0))
        dead.add_metric([action], row.get("dead", 0))
        since = row.get("oldest_pending_at")
        oldest.add_metric([action], max(0.0, now - since) if since else 0.0)
    yield from (pending, dead, oldest)


def _latency(latency: dict[str, Any]) -> Metric:
    family = HistogramMetricFamily(
        "mailpulse_action_delivery_seconds",
        "Time from the receiver's answer to the destination's, for delivered actions.",
        labels=["action"],
    )
    bounds = latency.get("buckets", [])
    for action, counts in sorted(latency.get("counts", {}).items()):
        cumulative, buckets = 0, []
        for bound, count in zip([*map(str, bounds), "+Inf"], counts, strict=False):
            cumulative += count
            buckets.append((bound, cumulative))
        family.add_metric([action], buckets, latency.get("sum", {}).get(action, 0.0))
    return family


def _flusher_work(status: dict[str, Any], spool: Spool) -> Iterator[Metric]:
    """This host's passes and batches, the lead's moves, and how long the spool's oldest
    request has waited."""
    host = status.get("host", "")
    for name, key, text in (
        ("mailpulse_flusher_passes", "passes", "Flush passes this host led."),
        ("mailpulse_flusher_batches", "batches", "Lake batches this host wrote."),
    ):
        family = CounterMetricFamily(name, text, labels=["host"])
        family.add_metric([host], status.get(key, 0))
        yield family
    yield CounterMetricFamily(
        "mailpulse_flusher_lead_changes",
        "Times the flusher's lead moved to another process (another host, with the shared "
        "spool), as of this host's last pass.",
        value=status.get("lead_changes", 0),
    )
    yield GaugeMetricFamily(
        "mailpulse_spool_oldest_seconds",
        "Age of the oldest request waiting in the spool, read now (0 when empty).",
        value=_oldest_waiting(spool),
    )


def _oldest_waiting(spool: Spool) -> float:
    """Seconds the oldest spooled request has waited; NaN when the spool cannot be read."""
    try:
        oldest = spool.claim(1, 1).records
    except SpoolUnavailable:
        return float("nan")
    return max(0.0, time.time() - oldest[0].received_at / 1e6) if oldest else 0.0


def render(spool: Spool, state_dir: Path) -> bytes:
    """The text exposition for one scrape."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:  # one process (tests, a single worker): its own counters are the whole truth
        for collector in (REQUESTS, SIGNATURE_FAILURES, REQUEST_SECONDS):
            registry.register(collector)
    registry.register(FlusherStatusCollector(spool, state_dir))
    registry.register(ActionsStatusCollector(state_dir))
    return generate_latest(registry)
