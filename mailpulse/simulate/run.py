"""One simulation run: every selected source's traffic, planned, sent, and its truth written."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import requests

from mailpulse.config import Config, SourceConfig
from mailpulse.errors import MailpulseError
from mailpulse.simulate.credentials import sender_keys
from mailpulse.simulate.esp import ESPS
from mailpulse.simulate.scenario import Scenario, generate
from mailpulse.simulate.schedule import Delivery, plan
from mailpulse.simulate.sender import Outcome, Sender, Target, progress_bar
from mailpulse.simulate.truth import TruthRecord, write_truth


@dataclass(frozen=True)
class Options:
    """What ``mailpulse simulate`` was asked to do."""

    url: str = "http://127.0.0.1:8025"
    sources: tuple[str, ...] = ()  # empty: every configured source
    seed: int = 7
    messages: int = 200
    duplicates: float = 0.1
    out_of_order: bool = False
    rate: float = 0.0
    concurrency: int = 8
    truth: Path | None = None
    sender_keys: Path | None = None
    end: date | None = None


@dataclass
class SourceReport:
    """What one source's traffic was and how the receiver answered it."""

    source: str
    provider: str
    events: int = 0
    batches: int = 0
    requests: int = 0
    repeats: int = 0
    accepted: int = 0
    attempts: int = 0
    rejected: Counter[str] = field(default_factory=Counter)  # "401 bad_signature" -> count

    def line(self) -> str:
        """One human line of counts."""
        text = (
            f"{self.source} ({self.provider}): {self.events} events in {self.batches} batches, "
            f"{self.requests} requests ({self.repeats} repeats, "
            f"{self.attempts - self.requests} retries), {self.accepted} accepted"
        )
        if self.rejected:
            text += "; NOT accepted: " + ", ".join(
                f"{count} x {why}" for why, count in sorted(self.rejected.items())
            )
        return text


@dataclass
class Result:
    """The whole run."""

    reports: list[SourceReport]
    truth_path: Path
    unique_events: int

    @property
    def failed(self) -> list[SourceReport]:
        """Sources with requests that were never accepted."""
        return [report for report in self.reports if report.rejected]

    def summary(self) -> dict[str, Any]:
        """The counts, as written beside the truth file."""
        return {
            "unique_events_accepted": self.unique_events,
            "sources": {
                r.source: {
                    "provider": r.provider,
                    "events": r.events,
                    "batches": r.batches,
                    "requests": r.requests,
                    "repeats": r.repeats,
                    "attempts": r.attempts,
                    "accepted": r.accepted,
                    "rejected": dict(r.rejected),
                }
                for r in self.reports
            },
        }


def select_sources(config: Config, names: tuple[str, ...]) -> list[SourceConfig]:
    """The sources to simulate, in the order given (default: every one, by name)."""
    if not names:
        if not config.sources:
            raise MailpulseError(f"no sources are configured in {config.origin}")
        return [config.sources[name] for name in sorted(config.sources)]
    unknown = [name for name in names if name not in config.sources]
    if unknown:
        known = ", ".join(sorted(config.sources)) or "none"
        raise MailpulseError(f"unknown source {unknown[0]!r} (configured: {known})")
    return [config.sources[name] for name in dict.fromkeys(names)]


def default_truth_path(config: Config, seed: int) -> Path:
    """``<data_dir>/simulate/truth-<seed>.jsonl``."""
    return config.data_dir / "simulate" / f"truth-{seed}.jsonl"


def prepare(config: Config, options: Options) -> list[tuple[Target, list[Delivery], int]]:
    """Each selected source's target, planned requests and event count; checks the keys."""
    selected = select_sources(config, options.sources)
    keys = sender_keys(selected, config.data_dir, options.sender_keys)
    slots = {name: index for index, name in enumerate(sorted(config.sources))}
    base = options.url.rstrip("/")
    prepared = []
    for source in selected:
        provider = ESPS[source.provider]
        url = f"{base}/webhooks/{source.name}"
        target = Target(
            source.name, provider, url, _registered_url(source) or url, keys[source.name]
        )
        scenario = Scenario(options.messages, options.seed, slots[source.name], options.end)
        events = generate(provider, scenario)
        deliveries = plan(
            events,
            max_batch=provider.max_batch,
            duplicates=options.duplicates,
            out_of_order=options.out_of_order,
            seed=options.seed * 1000 + slots[source.name],
        )
        if deliveries:
            _check_keys(target, deliveries[0])
        prepared.append((target, deliveries, len(events)))
    return prepared


def simulate(config: Config, options: Options) -> Result:
    """Send every selected source's traffic to ``options.url`` and write the truth file."""
    prepared = prepare(config, options)
    _check_reachable(options.url)
    # Interleave the sources, each in its own planned order, so every ESP sends at once.
    jobs = sorted(
        (
            (position / max(1, len(deliveries)), order, target, delivery)
            for order, (target, deliveries, _) in enumerate(prepared)
            for position, delivery in enumerate(deliveries)
        ),
        key=lambda job: (job[0], job[1]),
    )
    sender = Sender(concurrency=options.concurrency, rate=options.rate)
    with progress_bar(len(jobs), "simulating") as advance:
        outcomes = sender.send([(target, delivery) for *_, target, delivery in jobs], advance)
    reports = {
        target.source: SourceReport(
            target.source, target.provider.name, events=count, batches=_batches(deliveries)
        )
        for target, deliveries, count in prepared
    }
    accepted: dict[tuple[str, int], TruthRecord] = {}
    for outcome in outcomes:
        _tally(reports[outcome.target.source], outcome)
        if outcome.accepted:
            for event in outcome.delivery.events:
                key = (outcome.target.source, event.sequence)
                accepted[key] = TruthRecord(
                    outcome.target.source, outcome.target.provider.name, event
                )
    truth_path = options.truth or default_truth_path(config, options.seed)
    result = Result(list(reports.values()), truth_path, len(accepted))
    write_truth(truth_path, accepted.values(), result.summary())
    return result


def _check_reachable(url: str) -> None:
    """Fail in one line when nothing listens at ``url``, rather than retrying every request."""
    try:
        requests.get(f"{url.rstrip('/')}/healthz", timeout=5)
    except requests.RequestException as error:
        raise MailpulseError(
            f"cannot reach {url} ({type(error).__name__}); is `mailpulse serve` running there?"
        ) from None


def _registered_url(source: SourceConfig) -> str | None:
    """The URL the ESP was given, when the source records it (Mandrill signs it)."""
    option = source.options.get("url")
    if isinstance(option, str) and option:
        return option
    values = source.credentials.get("url")
    return values[0].reveal() if values else None


def _check_keys(target: Target, delivery: Delivery) -> None:
    """Encode one request before sending anything, so missing keys are one clear line."""
    try:
        target.provider.encode(
            delivery.events, url=target.signed_url, now=time.time(), sender=target.keys
        )
    except KeyError as missing:
        raise MailpulseError(
            f"source {target.source} ({target.provider.name}) needs the sender key "
            f"{missing.args[0]!r}: give it with --sender-keys FILE "
            f'({{"{target.source}": {{"{missing.args[0]}": "..."}}}})'
        ) from None
    except ValueError as error:
        raise MailpulseError(
            f"source {target.source} ({target.provider.name}): the sender keys do not work "
            f"({error})"
        ) from None


def _batches(deliveries: list[Delivery]) -> int:
    return len({delivery.batch for delivery in deliveries})


def _tally(report: SourceReport, outcome: Outcome) -> None:
    report.requests += 1
    report.attempts += outcome.attempts
    report.repeats += outcome.delivery.repeat
    if outcome.accepted:
        report.accepted += 1
    else:
        status = "no answer" if outcome.status is None else str(outcome.status)
        report.rejected[f"{status} {outcome.error or ''}".strip()] += 1
