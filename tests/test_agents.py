"""Opens and clicks by people, privacy proxies, scanners and bots; re-running the rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from analytics import open_lake
from ingest.flush.agents import RULES_VERSION, classify
from ingest.flush.flusher import Flusher
from ingest.flush.maintenance import reclassify
from mailpulse.config import Config
from tests.lakes import T0, row, write_lake

CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"


@pytest.mark.parametrize(
    ("event_type", "user_agent", "ip", "agent"),
    [
        ("opened", CHROME, "203.0.113.5", "human"),
        ("opened", "Mozilla/5.0", None, "apple_mpp"),
        ("opened", CHROME, "17.58.1.2", "apple_mpp"),  # Apple's network
        ("opened", "Mozilla/5.0 (via ggpht.com GoogleImageProxy)", None, "gmail_proxy"),
        ("opened", CHROME, "66.249.84.1", "gmail_proxy"),  # Google's image proxy network
        ("clicked", "Mozilla/5.0 (compatible; Barracuda Sentinel)", None, "scanner"),
        ("clicked", "python-requests/2.32", None, "bot"),
        ("clicked", None, None, "unknown"),
        ("clicked", "Mozilla/5.0", "17.58.1.2", "human"),  # Apple's network only proxies opens
    ],
)
def test_rules(event_type: str, user_agent: str | None, ip: str | None, agent: str) -> None:
    decided, reason = classify(event_type, user_agent, ip)
    assert decided == agent
    assert reason.startswith(f"rules v{RULES_VERSION}: ")


def test_reclassify_reruns_rules_over_history_and_keeps_esp_flags(config: Config) -> None:
    old = "rules v1: browser or mail client user agent"
    write_lake(
        config.data_dir,
        [
            row("d", "delivered", "a@x.io", T0, message_id="m"),
            # decided by an older rule as human, but it came from Apple's network
            row(
                "o1",
                "opened",
                "a@x.io",
                T0,
                message_id="m",
                user_agent=CHROME,
                ip="17.1.2.3",
                agent="human",
                agent_reason=old,
            ),
            # the ESP said bot: kept whatever the rules think
            row(
                "o2",
                "opened",
                "b@x.io",
                T0,
                message_id="n",
                user_agent=CHROME,
                agent="bot",
                agent_reason="esp flag: client-info.bot",
            ),
        ],
    )
    with open_lake(config.data_dir) as lake:
        before = lake.metrics(None, metrics=["unique_opens", "machine_opens"]).to_dicts()[0]
    assert before == {"unique_opens": 1, "machine_opens": 0}

    result = reclassify(Flusher(config))
    assert (result.partitions, result.rows_changed) == (1, 1)
    with open_lake(config.data_dir) as lake:
        agents = dict(lake.sql("SELECT event_id, agent FROM events").iter_rows())
        after = lake.metrics(None, metrics=["unique_opens", "machine_opens"]).to_dicts()[0]
    assert agents == {"d": None, "o1": "apple_mpp", "o2": "bot"}
    assert after == {"unique_opens": 0, "machine_opens": 1}
    assert reclassify(Flusher(config)).rows_changed == 0  # idempotent
    assert len(list((config.data_dir / "lake" / "events").rglob("*.parquet"))) == 1


def test_scanner_clicks_do_not_count_as_people(tmp_path: Path) -> None:
    """A click 3 s after delivery, or a burst of clicks, is not a unique click."""
    write_lake(
        tmp_path,
        [
            row("d1", "delivered", "a@x.io", T0, message_id="m1"),
            row("c1", "clicked", "a@x.io", T0.replace(second=3), message_id="m1", url="u"),
            row("d2", "delivered", "b@x.io", T0, message_id="m2"),
            *(
                row(
                    f"b{n}",
                    "clicked",
                    "b@x.io",
                    T0.replace(minute=30, second=n),
                    message_id="m2",
                    url=f"u{n}",
                )
                for n in range(4)
            ),
            row("d3", "delivered", "c@x.io", T0, message_id="m3"),
            row("c3", "clicked", "c@x.io", T0.replace(minute=30), message_id="m3", url="u"),
        ],
    )
    with open_lake(tmp_path) as lake:
        totals = lake.metrics(None, metrics=["unique_clicks", "total_clicks"]).to_dicts()[0]
    assert totals == {"unique_clicks": 1, "total_clicks": 6}
