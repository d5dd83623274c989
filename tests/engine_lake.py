"""A lake with every kind of message, and the comparison of another engine's metrics views
with ``mailpulse report --format json`` (tests/test_sql_dialects.py, tests/test_spark.py)."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from analytics import REGISTRY
from bench.lake_generator import generate
from tests.helpers import mailpulse
from tests.lakes import row, write_lake

END = datetime(2026, 11, 6, tzinfo=UTC)


def _edge_cases() -> list[dict[str, Any]]:
    """Messages on the edges of the definitions, written by hand beside the generated ones."""
    t = datetime(2026, 11, 3, 23, 59, 59, 999_999, tzinfo=UTC)  # each message starts here
    s, us = timedelta(seconds=1), timedelta(microseconds=1)
    edge = {"campaign": "edge"}
    return [
        # No campaign: a group of its own (null in every engine).
        row("n1", "delivered", "nocamp@example.com", t, message_id="n"),
        row("n2", "opened", "nocamp@example.com", t + 60 * s, message_id="n"),
        # Hard and soft bounce at the same instant: the more severe one counts.
        row("b1", "bounced", "same@example.com", t, message_id="b", bounce_class="soft", **edge),
        row("b2", "bounced", "same@example.com", t, message_id="b", bounce_class="hard", **edge),
        # A later bounce without a class: the last classified one (soft) counts.
        row("c1", "bounced", "nocls@example.com", t, message_id="c", bounce_class="soft", **edge),
        row("c2", "bounced", "nocls@example.com", t + s, message_id="c", **edge),
        # Delivered after a bounce, bounced after a delivery.
        row("d1", "bounced", "late@example.com", t, message_id="d", bounce_class="soft", **edge),
        row("d2", "delivered", "late@example.com", t + s, message_id="d", **edge),
        row("e1", "delivered", "gone@example.com", t, message_id="e", **edge),
        row(
            "e2", "bounced", "gone@example.com", t + s, message_id="e", bounce_class="hard", **edge
        ),
        # Unsubscribed then resubscribed (not unsubscribed); the other way round (unsubscribed).
        row("u1", "delivered", "resub@example.com", t, message_id="u", **edge),
        row("u2", "unsubscribed", "resub@example.com", t + s, message_id="u", **edge),
        row("u3", "resubscribed", "resub@example.com", t + 2 * s, message_id="u", **edge),
        row("v1", "delivered", "unsub@example.com", t, message_id="v", **edge),
        row("v2", "resubscribed", "unsub@example.com", t + s, message_id="v", **edge),
        row("v3", "unsubscribed", "unsub@example.com", t + 2 * s, message_id="v", **edge),
        # A click exactly 10 s after delivery is a person's; three clicks within exactly 5 s
        # are a scanner's, within 5 s and a microsecond a person's.
        row("k1", "delivered", "click@example.com", t, message_id="k", **edge),
        row("k2", "clicked", "click@example.com", t + 10 * s, message_id="k", **edge),
        row("l1", "delivered", "burst@example.com", t, message_id="l", **edge),
        row("l2", "clicked", "burst@example.com", t + 60 * s, message_id="l", **edge),
        row("l3", "clicked", "burst@example.com", t + 62 * s, message_id="l", **edge),
        row("l4", "clicked", "burst@example.com", t + 65 * s, message_id="l", **edge),
        row("m1", "delivered", "slowclick@example.com", t, message_id="m", **edge),
        row("m2", "clicked", "slowclick@example.com", t + 60 * s, message_id="m", **edge),
        row("m3", "clicked", "slowclick@example.com", t + 62 * s, message_id="m", **edge),
        row("m4", "clicked", "slowclick@example.com", t + 65 * s + us, message_id="m", **edge),
        # Opens by machines and by an unknown agent; a complaint; no message id at all.
        row("o1", "delivered", "bots@example.com", t, message_id="o", **edge),
        row("o2", "opened", "bots@example.com", t + s, message_id="o", agent="bot", **edge),
        row("o3", "opened", "bots@example.com", t + s, message_id="o", agent="scanner", **edge),
        row("o4", "opened", "bots@example.com", t + s, message_id="o", agent="unknown", **edge),
        row("o5", "complained", "bots@example.com", t + 9 * s, message_id="o", **edge),
        row("i1", "delivered", "noid@example.com", t, **edge),
        row("i2", "opened", "noid@example.com", t + s, **edge),
        # Dropped, and deferred then delivered, from another source and ESP.
        row("p1", "dropped", "drop@gmail.com", t, message_id="p", source="esp2", **edge),
        row("q1", "deferred", "slow@gmail.com", t, message_id="q", provider="sendgrid", **edge),
        row(
            "q2", "delivered", "slow@gmail.com", t + s, message_id="q", provider="sendgrid", **edge
        ),
    ]


def make_lake(directory: Path, events: int = 4000) -> Path:
    """A lake of ``events`` generated events sent over four days and five campaigns, plus the
    edge cases; returns the path of a ``mailpulse.toml`` that points at it."""
    data_dir = directory / "data"
    generate(
        data_dir,
        events=events,
        days=7,
        campaigns=5,
        recipients=events // 3,
        seed=11,
        end=END.timestamp(),
    )
    write_lake(data_dir, _edge_cases(), batch=999)
    config = directory / "mailpulse.toml"
    config.write_text(f'data_dir = "{data_dir}"\n')
    return config


def report(config: Path, by: str) -> list[dict[str, Any]]:
    """``mailpulse report --format json --by <by>``, parsed."""
    result = mailpulse("report", "--by", by, "--format", "json", config=config)
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def split_statements(script: str) -> list[str]:
    """The statements of a ``mailpulse sql`` script: each ends with ``;`` at a line's end."""
    return [part.strip() for part in re.split(r";\n", script) if part.strip()]


def assert_same_metrics(
    engine: list[dict[str, Any]], expected: list[dict[str, Any]], by: str
) -> None:
    """Every metric of every group equal: counts exactly, rates within 1e-12, null as null."""

    def key(row: dict[str, Any]) -> tuple[bool, str]:
        value = row[by]
        return value is None, value.isoformat() if isinstance(value, date) else str(value)

    engine, expected = sorted(engine, key=key), sorted(expected, key=key)
    assert [key(r) for r in engine] == [key(r) for r in expected]
    for got, want in zip(engine, expected, strict=True):
        for metric in REGISTRY:
            value, reference = got[metric.name], want[metric.name]
            where = f"{metric.name} for {by} {key(want)[1]}: {value!r} != {reference!r}"
            if metric.kind == "count" or reference is None:
                assert value == reference, where
                assert type(value) is type(reference), where
            else:
                assert value is not None and math.isclose(value, reference, abs_tol=1e-12), where
