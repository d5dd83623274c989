"""The suppression rules, their evidence, every export format read back, and cron's view."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from datetime import timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

from analytics import open_lake
from analytics.exports import FORMATS, export
from analytics.suppression import explain, suppressions
from mailpulse.config import SuppressionConfig
from tests.helpers import mailpulse, new_secret, write_config
from tests.lakes import T0, row, write_lake

D = timedelta(days=1)
RULES = SuppressionConfig()


def suppressed(
    tmp_path: Path, rows: list[dict[str, object]], rules: SuppressionConfig = RULES
) -> dict[str, dict[str, object]]:
    write_lake(tmp_path, rows)
    with open_lake(tmp_path) as lake:
        return {r["address"]: r for r in suppressions(lake, rules).to_dicts()}


def test_hard_bounce_complaint_unsubscribe_and_invalid_drop(tmp_path: Path) -> None:
    found = suppressed(
        tmp_path,
        [
            row("h1", "bounced", "hard@x.io", T0, bounce_class="hard", reason="550 5.1.1 unknown"),
            row("c1", "complained", "spam@x.io", T0 + D),
            row("u1", "unsubscribed", "bye@x.io", T0),
            row("d1", "dropped", "bad@x.io", T0, bounce_class="invalid"),
            row("d2", "dropped", "fine@x.io", T0, bounce_class="unsubscribed"),
            row("ok", "delivered", "happy@x.io", T0),
            row("s1", "bounced", "once@x.io", T0, bounce_class="soft"),
        ],
    )
    assert {a: r["rule"] for a, r in found.items()} == {
        "hard@x.io": "hard_bounce",
        "spam@x.io": "complaint",
        "bye@x.io": "unsubscribe",
        "bad@x.io": "invalid_drop",
    }
    hard = found["hard@x.io"]
    assert (hard["event_ids"], hard["reason"], hard["suppressed_at"]) == (
        ["h1"],
        "550 5.1.1 unknown",
        T0,
    )


def test_a_resubscribe_lifts_an_unsubscribe(tmp_path: Path) -> None:
    found = suppressed(
        tmp_path,
        [
            row("u1", "unsubscribed", "back@x.io", T0),
            row("r1", "resubscribed", "back@x.io", T0 + D),
            row("u2", "unsubscribed", "again@x.io", T0),
            row("r2", "resubscribed", "again@x.io", T0 + D),
            row("u3", "unsubscribed", "again@x.io", T0 + 2 * D),
        ],
    )
    assert set(found) == {"again@x.io"}
    assert found["again@x.io"]["event_ids"] == ["u3"]


def soft(address: str, n: int, at: timedelta) -> dict[str, object]:
    return row(
        f"{address}-s{n}",
        "bounced",
        address,
        T0 + at,
        bounce_class="soft",
        reason="452 mailbox full",
    )


def test_soft_bounces_within_the_window_and_the_reset_by_a_delivery(tmp_path: Path) -> None:
    found = suppressed(
        tmp_path,
        [
            # three within 30 days: suppressed, evidence is all three
            soft("three@x.io", 1, 0 * D),
            soft("three@x.io", 2, 10 * D),
            soft("three@x.io", 3, 29 * D),
            # three, but spread over more than 30 days: not
            soft("spread@x.io", 1, 0 * D),
            soft("spread@x.io", 2, 20 * D),
            soft("spread@x.io", 3, 40 * D),
            # a delivery in between resets the count
            soft("reset@x.io", 1, 0 * D),
            soft("reset@x.io", 2, 1 * D),
            row("reset-ok", "delivered", "reset@x.io", T0 + 2 * D),
            soft("reset@x.io", 3, 3 * D),
            # suppressed, then a delivery lifts it
            soft("lifted@x.io", 1, 0 * D),
            soft("lifted@x.io", 2, 1 * D),
            soft("lifted@x.io", 3, 2 * D),
            row("lifted-ok", "delivered", "lifted@x.io", T0 + 9 * D),
        ],
    )
    assert set(found) == {"three@x.io"}
    assert found["three@x.io"]["rule"] == "soft_bounces"
    assert found["three@x.io"]["event_ids"] == ["three@x.io-s1", "three@x.io-s2", "three@x.io-s3"]
    assert found["three@x.io"]["suppressed_at"] == T0 + 29 * D


def test_rules_are_configurable(tmp_path: Path) -> None:
    rows = [
        row("c1", "complained", "spam@x.io", T0),
        soft("two@x.io", 1, 0 * D),
        soft("two@x.io", 2, 1 * D),
    ]
    found = suppressed(tmp_path, rows, replace(RULES, complaint=False, soft_bounce_limit=2))
    assert {a: r["rule"] for a, r in found.items()} == {"two@x.io": "soft_bounces"}


def test_several_rules_name_the_earliest_and_list_all(tmp_path: Path) -> None:
    found = suppressed(
        tmp_path,
        [
            row("c1", "complained", "both@x.io", T0 + D),
            row("h1", "bounced", "both@x.io", T0, bounce_class="hard"),
        ],
    )
    assert found["both@x.io"]["rule"] == "hard_bounce"
    assert found["both@x.io"]["rules"] == ["hard_bounce", "complaint"]


def test_why_explains_and_says_what_lifted(tmp_path: Path) -> None:
    write_lake(
        tmp_path,
        [
            row("u1", "unsubscribed", "ann@x.io", T0),
            row("r1", "resubscribed", "ann@x.io", T0 + D),
            row("h1", "bounced", "bob@x.io", T0, bounce_class="hard", reason="550 no such user"),
        ],
    )
    with open_lake(tmp_path) as lake:
        bob = explain(lake, RULES, " BOB@x.io ")
        ann = explain(lake, RULES, "Ann@X.io")
        nobody = explain(lake, RULES, "nobody@x.io")
    assert bob.suppressed and "hard_bounce since" in bob.lines()[1]
    assert "550 no such user" in bob.lines()[1] and "h1" in bob.lines()[1]
    assert not ann.suppressed
    assert any("lifted by resubscribe r1" in line for line in ann.lines())
    assert not nobody.suppressed and "no bounce, complaint" in nobody.lines()[0]


ROWS = [
    row("h1", "bounced", "hard@x.io", T0, bounce_class="hard", reason="550 5.1.1 unknown"),
    row("c1", "complained", "spam@x.io", T0 + D),
]


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_reads_back(tmp_path: Path, fmt: str) -> None:
    write_lake(tmp_path, ROWS)
    with open_lake(tmp_path) as lake:
        frame = suppressions(lake, RULES)
    out = tmp_path / "out" / f"supp.{fmt}"
    result = export(frame, out, fmt, tmp_path / "state")
    assert result.rows == 2
    text = out.read_text()
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        assert [(r["address"], r["rule"], r["event_ids"]) for r in rows] == [
            ("hard@x.io", "hard_bounce", "h1"),
            ("spam@x.io", "complaint", "c1"),
        ]
    elif fmt == "jsonl":
        rows = [json.loads(line) for line in text.splitlines()]
        assert [(r["address"], r["rule"]) for r in rows] == [
            ("hard@x.io", "hard_bounce"),
            ("spam@x.io", "complaint"),
        ]
        assert rows[0]["suppressed_at"].startswith("2026-11-02T09:00:00")
    elif fmt == "sendgrid":
        assert json.loads(text) == {"recipient_emails": ["hard@x.io", "spam@x.io"]}
    elif fmt == "mailgun":
        rows = list(csv.DictReader(io.StringIO(text)))
        assert list(rows[0]) == ["address", "code", "error", "created_at"]
        assert rows[0]["address"] == "hard@x.io" and rows[0]["code"] == "550"
        assert parsedate_to_datetime(rows[0]["created_at"]) == T0
    elif fmt == "ses":
        assert text.splitlines() == ["hard@x.io,BOUNCE", "spam@x.io,COMPLAINT"]
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temporary left behind


def test_changes_since_last_over_three_runs(tmp_path: Path) -> None:
    out = tmp_path / "changes.csv"
    state = tmp_path / "state"

    def run(rows: list[dict[str, object]]) -> list[tuple[str, str]]:
        data = tmp_path / f"lake-{len(rows)}"
        write_lake(data, rows)
        with open_lake(data) as lake:
            export(suppressions(lake, RULES), out, "csv", state, changes_since_last=True)
        return [(r["address"], r["change"]) for r in csv.DictReader(io.StringIO(out.read_text()))]

    first = [
        row("a", "bounced", "a@x.io", T0, bounce_class="hard"),
        row("b", "unsubscribed", "b@x.io", T0),
    ]
    assert run(first) == [("a@x.io", "added"), ("b@x.io", "added")]
    second = [
        *first,
        row("b2", "resubscribed", "b@x.io", T0 + D),
        row("c", "complained", "c@x.io", T0 + D),
    ]
    assert run(second) == [("c@x.io", "added"), ("b@x.io", "removed")]
    assert run(second) == []


@pytest.mark.slow
def test_cli_export_and_why_exit_codes(tmp_path: Path) -> None:
    config = write_config(tmp_path, new_secret())
    write_lake(tmp_path / "data", ROWS)
    out = tmp_path / "exports" / "ses.csv"
    result = mailpulse(
        "suppressions", "export", "--format", "ses", "--out", str(out), config=config
    )
    assert result.returncode == 0, result.stderr
    assert out.read_text().splitlines() == ["hard@x.io,BOUNCE", "spam@x.io,COMPLAINT"]
    assert "2 suppressed" in result.stderr
    default = mailpulse("suppressions", "export", "--format", "ses", config=config)
    assert default.returncode == 0 and default.stderr == ""
    assert default.stdout.splitlines() == ["hard@x.io,BOUNCE", "spam@x.io,COMPLAINT"]
    assert not (tmp_path / "data" / "exports").exists()  # no --out: standard output only
    changes = mailpulse("suppressions", "export", "--changes-since-last", config=config)
    assert changes.returncode == 2 and "needs --out" in changes.stderr

    why = mailpulse("suppressions", "why", "hard@x.io", config=config)
    assert why.returncode == 0 and "hard_bounce" in why.stdout
    not_suppressed = mailpulse("suppressions", "why", "nobody@x.io", config=config)
    assert not_suppressed.returncode == 5 and "is not suppressed" in not_suppressed.stdout

    unwritable = mailpulse("suppressions", "export", "--out", "/proc/nope/x.csv", config=config)
    assert unwritable.returncode == 1
    assert unwritable.stderr.count("\n") == 1 and "cannot write" in unwritable.stderr


def test_addresses_near_the_soft_bounce_limit_and_the_export_preview(tmp_path: Path) -> None:
    from analytics.exports import preview
    from analytics.suppression import near_the_soft_bounce_limit

    write_lake(
        tmp_path,
        [
            soft("close@x.io", 1, 0 * D),
            soft("close@x.io", 2, 1 * D),
            soft("far@x.io", 1, 0 * D),
            soft("over@x.io", 1, 0 * D),
            soft("over@x.io", 2, 1 * D),
            soft("over@x.io", 3, 2 * D),
        ],
    )
    with open_lake(tmp_path) as lake:
        near = near_the_soft_bounce_limit(lake, RULES, now=T0 + 5 * D)
        stale = near_the_soft_bounce_limit(lake, RULES, now=T0 + 60 * D)
        frame = suppressions(lake, RULES)
    assert near["address"].to_list() == ["close@x.io"]
    assert near["event_ids"].to_list() == [["close@x.io-s1", "close@x.io-s2"]]
    assert stale.is_empty()  # bounces older than the window no longer bring it close
    out = tmp_path / "x.csv"
    assert preview(frame, out, "csv", tmp_path / "state").to_dicts() == [
        {"address": "over@x.io", "change": "added"}
    ]
    export(frame, out, "csv", tmp_path / "state")
    assert preview(frame, out, "csv", tmp_path / "state").is_empty()
