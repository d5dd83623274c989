"""`mailpulse simulate` against a real `mailpulse serve`, for every registered provider.

One server holds one source per provider (credentials from ``Esp.demo_credentials``,
generated per test run); the simulator sends each its traffic with repeats and out-of-order
arrival; after `mailpulse flush` the lake must hold exactly the simulator's truth: the same
multiset of events, no event id twice, nothing in quarantine. Providers registered later are
covered by the parametrization automatically.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from ingest.providers import PROVIDERS
from ingest.providers.generic import GenericProvider
from mailpulse.simulate.esp import ESPS, Esp
from mailpulse.simulate.esp.generic import GenericEsp
from mailpulse.simulate.scenario import APPLE_DOMAINS, CORPORATE_DOMAINS, Scenario, generate
from mailpulse.simulate.schedule import REORDER_WINDOW, batches, plan
from mailpulse.simulate.truth import read_truth, summary_path
from tests.helpers import Server, lake_rows, mailpulse, parse_config, running_server, start_server

KEY = ("source", "event_type", "recipient", "message_id", "campaign")
MESSAGES = 16  # per source: a few dozen events each keeps the module well under a minute


def _toml_value(value: Any) -> str:
    # JSON strings, numbers, booleans and arrays of them are valid TOML values too.
    return json.dumps(value)


def write_all_providers_config(directory: Path) -> tuple[Path, Path]:
    """A config with one source per registered provider, and the sender keys beside it."""
    lines = [f'data_dir = "{directory / "data"}"', "", "[receiver]"]
    lines += ["flush_interval_seconds = 3600", ""]
    sender: dict[str, dict[str, str]] = {}
    for name in sorted(PROVIDERS):
        receiver, keys = ESPS[name].demo_credentials(f"http://127.0.0.1:8025/webhooks/{name}")
        lines += [f"[sources.{name}]", f'provider = "{name}"']
        lines += [f"{key} = {_toml_value(value)}" for key, value in receiver.items()]
        lines.append("")
        sender[name] = keys
    config = directory / "mailpulse.toml"
    config.write_text("\n".join(lines))
    keys_path = directory / "sender-keys.json"
    keys_path.write_text(json.dumps(sender))
    keys_path.chmod(0o600)
    return config, keys_path


@dataclass
class Run:
    """The server, the simulator's result and the lake after a flush."""

    server: Server
    keys: Path
    simulate: Any
    truth_path: Path
    truth: list[dict[str, Any]]
    rows: list[dict[str, Any]]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """Simulate every provider once through a real server, then flush."""
    directory = tmp_path_factory.mktemp("simulate")
    config, keys = write_all_providers_config(directory)
    server = start_server(config, directory, "", workers=2, threads=8)
    try:
        result = mailpulse(
            "simulate",
            *("--url", server.base_url, "--sender-keys", str(keys)),
            *("--messages", str(MESSAGES), "--duplicates", "0.3", "--out-of-order"),
            *("--truth", str(directory / "truth.jsonl"), "--concurrency", "6"),
            config=config,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr + server.log()
        flushed = mailpulse("flush", config=config)
        assert flushed.returncode == 0, flushed.stderr
        yield Run(
            server,
            keys,
            result,
            directory / "truth.jsonl",
            read_truth(directory / "truth.jsonl"),
            lake_rows(directory / "data"),
        )
    finally:
        server.stop()


@pytest.mark.slow
@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_the_lake_holds_exactly_the_simulated_events(run: Run, provider: str) -> None:
    truth = [line for line in run.truth if line["provider"] == provider]
    rows = [row for row in run.rows if row["provider"] == provider]
    assert truth, f"the simulator sent nothing accepted for {provider}:\n{run.simulate.stderr}"
    expected = Counter(tuple(line[k] for k in KEY) for line in truth)
    stored = Counter(tuple(row[k] for k in KEY) for row in rows)
    assert stored == expected, (expected - stored, stored - expected)
    event_ids = Counter(row["event_id"] for row in rows)
    assert [eid for eid, n in event_ids.items() if n > 1] == []
    assert {row["source"] for row in rows} == {provider}


@pytest.mark.slow
def test_repeats_were_sent_and_nothing_was_quarantined(run: Run) -> None:
    summary = json.loads(summary_path(run.truth_path).read_text())
    for name, counts in summary["sources"].items():
        assert counts["repeats"] > 0, name  # duplicates really went over the wire
        assert counts["accepted"] == counts["requests"], name
    assert lake_rows(run.server.data_dir, "quarantine") == []
    assert summary["unique_events_accepted"] == len(run.truth) == len(run.rows)


@pytest.mark.slow
def test_same_seed_same_truth_and_no_new_events(run: Run, tmp_path: Path) -> None:
    """A second run with the seed sends the same events; the lake keeps them once."""
    again = tmp_path / "again.jsonl"
    result = mailpulse(
        "simulate",
        *("--url", run.server.base_url, "--sender-keys", str(run.keys)),
        *("--messages", str(MESSAGES), "--duplicates", "0", "--truth", str(again)),
        config=run.server.config_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert read_truth(again) == run.truth
    assert mailpulse("flush", config=run.server.config_path).returncode == 0
    assert len(lake_rows(run.server.data_dir)) == len(run.rows)


@pytest.mark.slow
def test_refused_requests_are_reported_and_exit_non_zero(run: Run, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"generic": {"secret": "not-the-secret"}}))
    result = mailpulse(
        "simulate",
        *("--url", run.server.base_url, "--sources", "generic", "--sender-keys", str(wrong)),
        *("--messages", "2", "--truth", str(tmp_path / "t.jsonl")),
        config=run.server.config_path,
    )
    assert result.returncode == 1
    assert "401 bad_signature" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("mailpulse: requests to generic")
    assert read_truth(tmp_path / "t.jsonl") == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--duplicates", "2"], "--duplicates"),
        (["--messages", "0"], "--messages"),
        (["--url", "ftp://x"], "--url"),
        (["--sources", "nope"], "unknown source 'nope'"),
        (["--sources", ","], "--sources"),
        (["--sources", "generic"], "cannot reach http://127.0.0.1:9"),  # nothing listens
    ],
)
def test_bad_options_give_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    config, _ = write_all_providers_config(tmp_path)
    target = [] if args[0] == "--url" else ["--url", "http://127.0.0.1:9"]
    result = mailpulse("simulate", *args, *target, config=config)
    assert result.returncode != 0
    first = result.stderr.splitlines()[0]
    assert first.startswith("mailpulse: ") and message in first, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.skipif("sendgrid" not in PROVIDERS, reason="needs a key-pair provider")
def test_a_missing_private_key_is_one_clear_line(tmp_path: Path) -> None:
    config, _ = write_all_providers_config(tmp_path)
    result = mailpulse(
        "simulate", "--sources", "sendgrid", "--url", "http://127.0.0.1:9", config=config
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "sendgrid" in result.stderr and "--sender-keys" in result.stderr


# The scenario and the schedule, without a server.


def _provider(cls: type[GenericProvider] = GenericProvider) -> Esp:
    """The generic ESP's sending side, writing for the receiver ``cls``."""

    class Sender(GenericEsp):
        provider = cls

    return Sender()


def test_the_scenario_is_deterministic_and_realistic() -> None:
    provider = _provider()
    scenario = Scenario(400, seed=3, end=date(2026, 11, 28))
    events = generate(provider, scenario)
    assert events == generate(provider, scenario)
    assert events != generate(provider, Scenario(400, seed=4, end=date(2026, 11, 28)))
    kinds = Counter(event.event_type for event in events)
    expected = {"sent", "delivered", "deferred", "bounced", "dropped", "opened", "clicked"}
    assert expected <= set(kinds)
    assert len({event.sequence for event in events}) == len(events)
    bounces = {event.bounce_class for event in events if event.event_type == "bounced"}
    assert bounces == {"hard", "soft"}
    domains = {event.recipient.rpartition("@")[2] for event in events}
    assert {"gmail.com", "outlook.com", "yahoo.com", "icloud.com"} <= domains
    assert domains & CORPORATE_DOMAINS
    apple = [e for e in events if e.agent == "apple_mpp"]
    assert apple and all(e.recipient.rpartition("@")[2] in APPLE_DOMAINS for e in apple)
    delivered = {e.message_id: e.occurred_at for e in events if e.event_type == "delivered"}
    scanner = [
        e for e in events if e.event_type == "clicked" and "SafeLinks" in (e.user_agent or "")
    ]
    assert scanner
    assert all(e.recipient.rpartition("@")[2] in CORPORATE_DOMAINS for e in scanner)
    assert all(e.occurred_at - delivered[e.message_id] < 10 for e in scanner)
    seconds = Counter((e.message_id, e.event_type, int(e.occurred_at)) for e in events)
    assert max(seconds.values()) == 1  # ESPs that key events by the second can tell them apart
    assert max(e.occurred_at for e in events) < scenario_end(scenario)


def scenario_end(scenario: Scenario) -> float:
    from mailpulse.simulate.scenario import end_of_timeline

    return end_of_timeline(scenario.end)


def test_only_event_types_the_esp_reports() -> None:
    class Quiet(GenericProvider):
        emits = frozenset({"delivered", "bounced"})

    events = generate(_provider(Quiet), Scenario(200, seed=1))
    assert {event.event_type for event in events} == {"delivered", "bounced"}


@pytest.mark.parametrize("max_batch", [1, 7, 1000])
def test_batches_never_exceed_max_batch(max_batch: int) -> None:
    events = generate(_provider(), Scenario(600, seed=2))
    grouped = batches(events, max_batch)
    assert all(1 <= len(batch) <= max_batch for batch in grouped)
    assert [e for batch in grouped for e in batch] == sorted(
        events, key=lambda e: (e.occurred_at, e.sequence)
    )
    if max_batch > 1:
        assert max(len(batch) for batch in grouped) > 1


def test_duplicates_rate_and_order() -> None:
    events = generate(_provider(), Scenario(3000, seed=5))
    deliveries = plan(events, max_batch=1, duplicates=0.2, out_of_order=False, seed=5)
    firsts = [d for d in deliveries if not d.repeat]
    repeated = {d.batch for d in deliveries if d.repeat}
    assert abs(len(repeated) / len(firsts) - 0.2) < 0.03
    assert [d.batch for d in firsts] == sorted(d.batch for d in firsts)  # in order without the flag
    position = {d.batch: i for i, d in enumerate(deliveries) if not d.repeat}
    for i, delivery in enumerate(deliveries):
        if delivery.repeat:
            assert i > position[delivery.batch]  # a repeat arrives after the original
    assert plan(events, max_batch=1, duplicates=0.0, out_of_order=False, seed=5) == [
        d for d in deliveries if not d.repeat
    ]


def test_out_of_order_stays_within_the_window() -> None:
    events = generate(_provider(), Scenario(1000, seed=6))
    deliveries = plan(events, max_batch=1, duplicates=0.0, out_of_order=True, seed=6)
    order = [d.batch for d in deliveries]
    assert sorted(order) == list(range(len(order)))
    assert order != sorted(order)
    assert all(abs(batch - index) <= REORDER_WINDOW for index, batch in enumerate(order))
    assert deliveries == plan(events, max_batch=1, duplicates=0.0, out_of_order=True, seed=6)


def test_demo_credentials_are_kept_and_completed(tmp_path: Path) -> None:
    from mailpulse.simulate.credentials import DEMO_CREDENTIALS, ensure_demo_credentials

    first = ensure_demo_credentials(tmp_path)
    path = tmp_path / DEMO_CREDENTIALS
    assert set(first) == set(PROVIDERS)
    assert path.stat().st_mode & 0o777 == 0o600
    assert ensure_demo_credentials(tmp_path) == first  # generated once
    document = json.loads(path.read_text())
    del document["sources"]["generic"]  # as if generic were registered after the first run
    path.write_text(json.dumps(document))
    again = ensure_demo_credentials(tmp_path)
    assert {k: v for k, v in again.items() if k != "generic"} == {
        k: v for k, v in first.items() if k != "generic"
    }
    assert again["generic"]["receiver"]["secret"] != first["generic"]["receiver"]["secret"]
    assert path.stat().st_mode & 0o777 == 0o600


def test_sender_keys_overlay_in_order(tmp_path: Path) -> None:
    from mailpulse.errors import MailpulseError
    from mailpulse.simulate.credentials import DEMO_CREDENTIALS, sender_keys

    document = {"sources": {"a": {"provider": "generic", "secret": "own"}}}
    source = parse_config(document, env={}).sources["a"]
    assert sender_keys([source], tmp_path) == {"a": {"secret": "own"}}
    demo = {"a": {"provider": "generic", "receiver": {}, "sender": {"secret": "demo"}}}
    (tmp_path / DEMO_CREDENTIALS).write_text(json.dumps({"sources": demo}))
    assert sender_keys([source], tmp_path) == {"a": {"secret": "demo"}}
    extra = tmp_path / "keys.json"
    extra.write_text(json.dumps({"a": {"secret": "given"}, "other": {"x": "y"}}))
    assert sender_keys([source], tmp_path, extra) == {"a": {"secret": "given"}}
    demo["a"]["provider"] = "sendgrid"  # keys made for another provider are not used
    (tmp_path / DEMO_CREDENTIALS).write_text(json.dumps({"sources": demo}))
    assert sender_keys([source], tmp_path) == {"a": {"secret": "own"}}
    extra.write_text('["not", "an", "object"]')
    with pytest.raises(MailpulseError, match="must be"):
        sender_keys([source], tmp_path, extra)


@pytest.mark.slow
def test_429s_are_retried_until_accepted(tmp_path: Path) -> None:
    """A source over its rate limit answers 429; the simulator backs off and retries."""
    with running_server(tmp_path, extra='rate_limit = "15/second"') as server:
        truth = tmp_path / "truth.jsonl"
        result = mailpulse(
            "simulate",
            *("--url", server.base_url, "--messages", "24", "--concurrency", "8"),
            *("--duplicates", "0", "--truth", str(truth)),
            config=server.config_path,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        counts = json.loads(summary_path(truth).read_text())["sources"]["in_house"]
        assert counts["attempts"] > counts["requests"] == counts["accepted"]  # retried, then ok
        assert mailpulse("flush", config=server.config_path).returncode == 0
    assert len(lake_rows(tmp_path / "data")) == len(read_truth(truth))
