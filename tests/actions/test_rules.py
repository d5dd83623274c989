"""Which events an action takes: the filters, run by the real tailer over spooled requests.

Requests go into a real spool exactly as the receiver stores them, the tailer normalizes them
with the real providers and agent rules, and the outbox shows what was matched.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from ingest.actions.rules import webhook_id
from ingest.actions.tailer import Tailer
from ingest.intake.receiver import VERDICT_HEADER
from ingest.spool import open_spool
from ingest.spool.outbox import open_outbox
from mailpulse.config import Config
from tests.helpers import event, in_house_request, new_secret, parse_config

CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"
SCANNER = "Mozilla/5.0 (compatible; Barracuda Sentinel link protection)"
APPLE_PROXY = "Mozilla/5.0"  # Apple Mail Privacy Protection's bare user agent


def configured(tmp_path: Path, actions: dict[str, Any], **source: Any) -> Config:
    return parse_config(
        {
            "data_dir": str(tmp_path / "data"),
            "sources": {"in_house": {"provider": "generic", "secret": new_secret(), **source}},
            "actions": {
                name: {"do": "webhook", "url": "http://127.0.0.1:9/", "secret": "whsec_" + "A" * 32}
                | table
                for name, table in actions.items()
            },
        }
    )


def matched(config: Config, *bodies: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """Spool ``bodies`` as requests, run the tailer until it is through, and return the
    (action, event id) pairs it recorded."""
    spool, outbox = open_spool(config), open_outbox(config)
    for body in bodies:
        spool.append(in_house_request(json.dumps(body).encode()))
    tailer = Tailer(config, spool, outbox)
    while tailer.step():
        pass
    rows = outbox.rows(["pending"], 1000)
    return {(row.action, row.event_id) for row in rows}


def test_scanner_clicks_and_machine_opens_do_not_trigger_rules_for_humans(tmp_path: Path) -> None:
    config = configured(
        tmp_path,
        {
            "humans": {"event_types": ["clicked", "opened"], "agents": ["human"]},
            "machines": {"event_types": ["clicked", "opened"], "agents": ["machine"]},
        },
    )
    events = [
        event("person-click", "clicked", user_agent=CHROME, url="https://x.test/a"),
        event("scanner-click", "clicked", user_agent=SCANNER, url="https://x.test/a"),
        event("person-open", "opened", user_agent=CHROME),
        event("apple-open", "opened", user_agent=APPLE_PROXY),
        event("bot-click", "clicked", user_agent="python-requests/2.32", url="https://x.test/"),
    ]
    assert matched(config, events) == {
        ("humans", "person-click"),
        ("humans", "person-open"),
        ("machines", "scanner-click"),
        ("machines", "apple-open"),
        ("machines", "bot-click"),
    }


def test_every_filter_must_match(tmp_path: Path) -> None:
    config = configured(
        tmp_path,
        {
            "hard-bounces": {
                "event_types": ["bounced"],
                "bounce_classes": ["hard"],
                "campaigns": ["winter"],
                "recipient_domains": ["Example.COM"],
                "sources": ["in_house"],
            }
        },
    )
    events = [
        event("yes", "bounced", bounce_class="hard", campaign="winter"),
        event("soft", "bounced", bounce_class="soft", campaign="winter"),
        event("other-campaign", "bounced", bounce_class="hard", campaign="summer"),
        event("no-campaign", "bounced", bounce_class="hard"),
        event("other-domain", "bounced", bounce_class="hard", campaign="winter", email="a@b.org"),
        event(
            "upper-domain", "bounced", bounce_class="hard", campaign="winter", email="A@EXAMPLE.com"
        ),
        event("delivered", "delivered", campaign="winter"),
    ]
    assert matched(config, events) == {("hard-bounces", "yes"), ("hard-bounces", "upper-domain")}


def test_no_filter_takes_every_event_once_even_when_the_esp_retries(tmp_path: Path) -> None:
    config = configured(tmp_path, {"all": {}})
    body = [event("a"), event("b", "opened", user_agent=CHROME), event("a")]
    assert matched(config, body, body) == {("all", "a"), ("all", "b")}


def test_requests_a_shadow_source_could_not_authenticate_are_never_acted_on(
    tmp_path: Path,
) -> None:
    config = configured(tmp_path, {"all": {}}, shadow=True)
    spool, outbox = open_spool(config), open_outbox(config)
    for name, verdict in (("forged", "signature mismatch"), ("genuine", "verified")):
        record = in_house_request(json.dumps([event(name, "bounced")]).encode())
        spool.append(replace(record, headers={VERDICT_HEADER: verdict}))
    tailer = Tailer(config, spool, outbox)
    while tailer.step():
        pass
    assert {row.event_id for row in outbox.rows(["pending"], 10)} == {"genuine"}


def test_the_recorded_event_is_the_normalized_one_with_a_stable_id(tmp_path: Path) -> None:
    config = configured(tmp_path, {"crm": {"event_types": ["clicked"]}})
    stamp = int(time.time()) - 60
    body = [event("c1", "clicked", timestamp=stamp, campaign="winter", url="https://x.test/p")]
    assert matched(config, body) == {("crm", "c1")}
    (row,) = open_outbox(config).rows(["pending"], 10)
    recorded = orjson.loads(row.event)
    assert row.webhook_id == webhook_id("crm", "c1") == webhook_id("crm", "c1")
    assert row.webhook_id != webhook_id("other", "c1")
    assert "raw" not in recorded
    assert recorded["event_type"] == "clicked"
    assert recorded["campaign"] == "winter"
    assert recorded["recipient"] == "c1@example.com"
    assert recorded["url"] == "https://x.test/p"
    assert recorded["occurred_at"].endswith("Z")
    assert abs(row.received_at - time.time()) < 60


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ({"event_types": ["clickd"]}, "event_types: 'clickd' is not one of"),
        ({"agents": ["person"]}, "agents: 'person' is not one of"),
        ({"do": "email"}, "do must be one of webhook, slack, suppress"),
        ({"url": "ftp://x"}, "url must be an http:// or https:// URL"),
        ({"secret": "not base64!"}, "secret must be a Standard Webhooks secret"),
        ({"colour": "red"}, "colour: unknown key"),
        ({"concurrency": 0}, "concurrency must be a number greater than zero"),
    ],
)
def test_mistakes_are_reported_one_line_each(
    tmp_path: Path, table: dict[str, Any], problem: str
) -> None:
    from mailpulse.errors import ConfigError

    with pytest.raises(ConfigError) as raised:
        configured(tmp_path, {"crm": table})
    assert any(problem in line for line in raised.value.lines()), raised.value.lines()
