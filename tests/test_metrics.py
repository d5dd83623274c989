"""Every registry metric on a small hand-built lake, with the answers worked out by hand.

The lake holds one campaign, "spring", whose messages cover the edge cases: several opens,
a machine-only open, a bounce then a delivery, a click with no open, a scanner click seconds
after delivery, a click burst, a complaint without a delivery, an unsubscribe lifted by a
resubscribe, a drop, a deferral, and a message with no campaign. Rows are written in shuffled
order, so nothing depends on arrival order.
"""

from __future__ import annotations

import random
import tempfile
from datetime import date, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics import METRICS, REGISTRY, BadQuery, Lake, open_lake, rollup
from analytics.mailbox import mailbox_provider, mailbox_provider_sql
from analytics.totals import totals_source
from ingest.providers.events import EVENT_TYPES
from mailpulse.storage import LakeStore
from tests.lakes import T0, row, write_lake

M, H, D = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
S = timedelta(seconds=1)
HUMAN_UA = "Mozilla/5.0 (Windows NT 10.0) Chrome/131.0"


def spring_rows() -> list[dict[str, object]]:
    c = {"campaign": "spring"}
    rows = [
        row("1a", "sent", "ann@gmail.com", T0, message_id="m1", **c),
        row("1b", "delivered", "ann@gmail.com", T0 + M, message_id="m1", **c),
        row("1c", "opened", "ann@gmail.com", T0 + H, message_id="m1", **c),
        row("1d", "opened", "ann@gmail.com", T0 + 2 * H, message_id="m1", **c),
        row("1e", "clicked", "ann@gmail.com", T0 + H + 30 * S, message_id="m1", url="u1", **c),
        row("2a", "delivered", "bob@icloud.com", T0 + M, message_id="m2", **c),
        row("2b", "opened", "bob@icloud.com", T0 + 2 * M, message_id="m2", agent="apple_mpp", **c),
        row("3a", "bounced", "cat@yahoo.com", T0 + M, message_id="m3", bounce_class="soft", **c),
        row("3b", "delivered", "cat@yahoo.com", T0 + 10 * M, message_id="m3", **c),
        row("3c", "clicked", "cat@yahoo.com", T0 + 3 * H, message_id="m3", url="u1", **c),
        row("4a", "bounced", "dan@outlook.com", T0 + M, message_id="m4", bounce_class="hard", **c),
        row("5a", "delivered", "eve@corp.example", T0 + M, message_id="m5", **c),
        row(
            "5b",
            "clicked",
            "eve@corp.example",
            T0 + M + 3 * S,
            message_id="m5",
            url="u1",
            user_agent=HUMAN_UA,
            **c,
        ),
        row("6a", "delivered", "fay@corp.example", T0 + M, message_id="m6", **c),
        *(
            row(
                f"6c{n}",
                "clicked",
                "fay@corp.example",
                T0 + H + n * S,
                message_id="m6",
                url=f"u{n}",
                **c,
            )
            for n in range(3)
        ),
        row("7a", "complained", "gus@gmail.com", T0 + D, message_id="m7", **c),
        row("8a", "delivered", "hal@gmail.com", T0 + M, message_id="m8", **c),
        row("8b", "complained", "hal@gmail.com", T0 + D, message_id="m8", **c),
        row("8c", "unsubscribed", "hal@gmail.com", T0 + D, message_id="m8", **c),
        row("9a", "delivered", "ivy@gmail.com", T0 + M, message_id="m9", **c),
        row("9b", "unsubscribed", "ivy@gmail.com", T0 + H, message_id="m9", **c),
        row("9c", "resubscribed", "ivy@gmail.com", T0 + 2 * H, message_id="m9", **c),
        row("10a", "dropped", "jay@gmail.com", T0, message_id="m10", bounce_class="invalid", **c),
        row("11a", "deferred", "kim@gmail.com", T0, message_id="m11", **c),
        row("11b", "delivered", "kim@gmail.com", T0 + H, message_id="m11", **c),
        row("12a", "delivered", "lou@gmail.com", T0 + 8 * D, message_id="m12"),  # no campaign
    ]
    random.Random(3).shuffle(rows)
    return rows


EXPECTED_SPRING = {
    "sent": 9,
    "delivered": 8,
    "bounced": 1,
    "hard_bounced": 1,
    "soft_bounced": 0,
    "dropped": 1,
    "deferred": 1,
    "delivery_rate": 8 / 9,
    "bounce_rate": 1 / 9,
    "hard_bounce_rate": 1 / 9,
    "unique_opens": 1,
    "unique_open_rate": 1 / 8,
    "machine_opens": 1,
    "machine_open_share": 1 / 3,
    "total_opens": 3,
    "unique_clicks": 2,
    "unique_click_rate": 2 / 8,
    "total_clicks": 6,
    "click_to_open_rate": 1.0,
    "complaints": 2,
    "complaint_rate": 1 / 8,
    "unsubscribes": 1,
    "unsubscribe_rate": 1 / 8,
}


@pytest.fixture
def spring(tmp_path: Path) -> Path:
    write_lake(tmp_path, spring_rows())
    return tmp_path


def test_every_metric_has_a_hand_computed_answer() -> None:
    assert set(EXPECTED_SPRING) == set(METRICS)


def test_every_metric_by_campaign(spring: Path) -> None:
    with open_lake(spring) as lake:
        rows = {r["campaign"]: r for r in lake.metrics("campaign").to_dicts()}
    assert set(rows) == {"spring", None}
    for name, expected in EXPECTED_SPRING.items():
        assert rows["spring"][name] == pytest.approx(expected), name
    assert rows[None]["delivered"] == 1  # a message without a campaign is still counted


def test_rates_with_no_denominator_are_null(spring: Path) -> None:
    with open_lake(spring) as lake:
        (only,) = lake.metrics(None, campaign="nonexistent").to_dicts()
    assert only["delivered"] == 0
    assert only["bounce_rate"] is None and only["unique_open_rate"] is None


@pytest.mark.parametrize(
    ("by", "expected"),
    [
        ("mailbox_provider", {"gmail": 5, "apple": 1, "yahoo": 1, "microsoft": 0, "other": 2}),
        (
            "domain",
            {"gmail.com": 5, "icloud.com": 1, "yahoo.com": 1, "outlook.com": 0, "corp.example": 2},
        ),
        ("provider", {"generic": 9}),
        ("source", {"test": 9}),
    ],
)
def test_delivered_by_each_dimension(spring: Path, by: str, expected: dict[str, int]) -> None:
    with open_lake(spring) as lake:
        frame = lake.metrics(by, metrics=["delivered"])
    assert dict(frame.iter_rows()) == expected


def test_by_date_week_and_month(spring: Path) -> None:
    with open_lake(spring) as lake:
        days = dict(lake.metrics("date", metrics=["delivered"]).iter_rows())
        weeks = dict(lake.metrics("date", period="week", metrics=["delivered"]).iter_rows())
        months = dict(lake.metrics("date", period="month", metrics=["delivered"]).iter_rows())
    assert days == {date(2026, 11, 2): 8, date(2026, 11, 3): 0, date(2026, 11, 10): 1}
    assert weeks == {date(2026, 11, 2): 8, date(2026, 11, 9): 1}
    assert months == {date(2026, 11, 1): 9}


def test_a_message_counts_on_the_date_it_was_first_seen(spring: Path) -> None:
    """m7's complaint comes a day later, but m7 has no earlier event, so it is the 3rd's."""
    with open_lake(spring) as lake:
        first = lake.metrics(None, since="2026-11-02", until="2026-11-03").to_dicts()[0]
        later = lake.metrics(None, since="2026-11-03").to_dicts()[0]
    assert (first["delivered"], first["complaints"]) == (8, 1)
    assert (later["delivered"], later["complaints"]) == (1, 1)


def test_timing(spring: Path) -> None:
    with open_lake(spring) as lake:
        timing = lake.timing("campaign").to_dicts()
    spring_row = next(r for r in timing if r["campaign"] == "spring")
    # m1 is the only message with a sent event before its delivery: 60 s; the rest are 0.
    assert spring_row["median_seconds_to_delivery"] == 0
    assert spring_row["median_seconds_to_first_open"] == pytest.approx((H - M).total_seconds())


def test_summary_and_notebook_display_leave_the_lake_usable(spring: Path) -> None:
    with open_lake(spring) as lake:
        summary = lake.summary()
        html = lake._repr_html_()
        after = lake.metrics(None, metrics=["delivered"]).to_dicts()
    assert summary["events"] == len(spring_rows()) and summary["campaigns"] == 1
    assert "mailpulse lake" in html and str(spring) in html
    assert after == [{"delivered": 9}]


def test_the_summary_span_is_the_events_span_with_or_without_file_statistics(
    spring: Path,
) -> None:
    """The span comes from the files' statistics; a file written without them (another
    writer) makes the summary read the events instead, with the same answer."""
    import pyarrow.parquet as pq

    with open_lake(spring) as lake:
        scanned = lake.sql("SELECT min(occurred_at), max(occurred_at) FROM events").row(0)
        summary = lake.summary()
        assert lake.run_on_snapshot(lake._span_sql).row(0)[2] is True
    assert (summary["first"], summary["last"]) == scanned
    assert summary["first"] < summary["last"]
    for path in (spring / "lake" / "events").rglob("*.parquet"):
        pq.write_table(pq.ParquetFile(path).read(), path, write_statistics=False)
    with open_lake(spring) as lake:
        assert lake.run_on_snapshot(lake._span_sql).row(0)[2] is False
        assert lake.summary() == summary


def test_an_empty_lake_gives_zeros_not_errors(tmp_path: Path) -> None:
    write_lake(tmp_path, [])
    with open_lake(tmp_path) as lake:
        assert lake.metrics("campaign").is_empty()
        (total,) = lake.metrics(None).to_dicts()
    assert total["delivered"] == 0 and total["bounce_rate"] is None


def test_unknown_dimension_metric_or_period_is_a_clear_error(spring: Path) -> None:
    with open_lake(spring) as lake:
        with pytest.raises(BadQuery, match="cannot group by 'colour'"):
            lake.metrics("colour")
        with pytest.raises(BadQuery, match="unknown metric 'opens'"):
            lake.metrics(metrics=["opens"])
        with pytest.raises(BadQuery, match="period must be one of"):
            lake.metrics("date", period="fortnight")


def test_mailbox_provider_python_and_sql_agree(spring: Path) -> None:
    with open_lake(spring) as lake:
        pairs = lake.sql(
            f"SELECT DISTINCT recipient_domain, {mailbox_provider_sql()} AS p FROM events"
        ).iter_rows()
        for domain, provider in pairs:
            assert mailbox_provider(domain) == provider


# ---------------------------------------------------------------- properties

event_types = st.sampled_from(sorted(EVENT_TYPES))
agents = st.sampled_from(["human", "apple_mpp", "gmail_proxy", "scanner", "bot", "unknown"])


@st.composite
def lakes(draw: st.DrawFn) -> list[dict[str, object]]:
    rows = []
    for n in range(draw(st.integers(0, 25))):
        message = draw(st.integers(0, 8))
        kind = draw(event_types)
        rows.append(
            row(
                f"e{n}",
                kind,
                f"r{message}@{draw(st.sampled_from(['gmail.com', 'x.io']))}",
                T0 + timedelta(hours=draw(st.integers(0, 24 * 6))),
                message_id=f"m{message}",
                campaign=draw(st.sampled_from(["a", "b", None])),
                bounce_class=draw(st.sampled_from(["hard", "soft", "undetermined"])),
                agent=draw(agents) if kind in ("opened", "clicked") else None,
            )
        )
    return rows


@settings(max_examples=60, deadline=None)
@given(rows=lakes(), split_day=st.integers(1, 6))
def test_properties_of_every_metric(rows: list[dict[str, object]], split_day: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        write_lake(Path(directory), rows)
        with open_lake(directory) as lake:
            whole = lake.metrics(None).to_dicts()[0]
            split = (T0 + timedelta(days=split_day)).date()
            before = lake.metrics(None, until=split).to_dicts()[0]
            after = lake.metrics(None, since=split).to_dicts()[0]
            per_campaign = lake.metrics("campaign").to_dicts()
    for values in (whole, before, after, *per_campaign):
        for metric in REGISTRY:
            value = values[metric.name]
            if metric.kind == "rate":
                assert value is None or 0.0 <= value <= 1.0, (metric.name, value)
            else:
                assert value >= 0
        assert values["unique_opens"] <= values["total_opens"]
        assert values["unique_clicks"] <= values["total_clicks"]
        assert values["delivered"] + values["bounced"] <= values["sent"]
    for metric in REGISTRY:
        if metric.additive:
            assert before[metric.name] + after[metric.name] == whole[metric.name], metric.name
            assert sum(r[metric.name] for r in per_campaign) == whole[metric.name], metric.name


# ---------------------------------------------------------------- the rollup


@settings(max_examples=40, deadline=None)
@given(first=lakes(), second=lakes())
def test_the_rollup_and_newer_files_give_the_numbers_of_the_events(
    first: list[dict[str, object]], second: list[dict[str, object]]
) -> None:
    """Reports from the rollup merged with files written since equal a full regrouping."""
    second = [{**r, "event_id": f"late-{r['event_id']}"} for r in second]
    with tempfile.TemporaryDirectory() as directory:
        data = Path(directory)
        write_lake(data, first, batch=1)
        built = rollup.build(LakeStore.local(data / "lake"))
        write_lake(data, second, batch=2)
        with open_lake(data) as lake, Lake(data, use_rollup=False) as raw:
            assert (lake._state() is not None) == (built is not None)
            found = totals_source(lake.store, lake.files, lake.con)
            assert (found is not None) == (built is not None)
            for by in (None, "campaign", "date", ("domain", "mailbox_provider", "source")):
                assert lake.metrics(by).to_dicts() == raw.metrics(by).to_dicts()
            # A day through the totals, an hour through the per-message path.
            for since, until in ((T0.date(), T0.date() + D), (T0, T0 + H)):
                assert lake.metrics("date", period="week", since=since, until=until).equals(
                    raw.metrics("date", period="week", since=since, until=until)
                )
            assert lake.timing(None).to_dicts() == raw.timing(None).to_dicts()
            assert (
                lake.messages()
                .sort("message_id", "recipient")
                .equals(raw.messages().sort("message_id", "recipient"))
            )


def test_a_rewritten_file_retires_the_rollup_until_compaction_rebuilds_it(
    spring: Path, tmp_path: Path
) -> None:
    from tests.helpers import mailpulse

    lake_dir = spring / "lake"
    assert rollup.build(LakeStore.local(lake_dir)) is not None
    with open_lake(spring) as lake:
        assert lake._state() is not None
        before = lake.metrics("campaign").to_dicts()
    write_lake(
        spring,
        [row("x1", "delivered", "new@x.io", T0, message_id="mx", campaign="spring")],
        batch=5,
    )
    toml = tmp_path / "mailpulse.toml"
    toml.write_text(f"data_dir = {str(spring)!r}\n")
    # Rewrites the 2026-11-02 partition, then rebuilds the rollup.
    assert mailpulse("compact", config=toml).returncode == 0
    with open_lake(spring) as lake, Lake(spring, use_rollup=False) as raw:
        assert lake._state() is not None
        after = lake.metrics("campaign").to_dicts()
        assert after == raw.metrics("campaign").to_dicts()
    assert {r["campaign"]: r["delivered"] for r in after}["spring"] == (
        {r["campaign"]: r["delivered"] for r in before}["spring"] + 1
    )
    (only,) = list((lake_dir / "messages").glob("rollup-*.json"))  # older ones removed
    stem = only.name.removesuffix(".json")
    assert sorted(p.name for p in (lake_dir / "messages").glob("rollup-*.parquet")) == [
        f"{stem}-addresses.parquet",
        f"{stem}-suppressions.parquet",
        f"{stem}-totals.parquet",
        f"{stem}.parquet",
    ]


def test_a_stale_rollup_is_never_read(spring: Path) -> None:
    """When a file the rollup covers is gone (rewritten), reports regroup the events."""
    assert rollup.build(LakeStore.local(spring / "lake")) is not None
    (covered, *_rest) = sorted((spring / "lake" / "events").rglob("*.parquet"))
    covered.rename(covered.with_name("part-0000000099-0badc0de.parquet"))
    with open_lake(spring) as lake, Lake(spring, use_rollup=False) as raw:
        assert lake._state() is None
        assert lake.metrics("campaign").to_dicts() == raw.metrics("campaign").to_dicts()


def test_a_duplicate_delivery_of_an_event_counts_once(tmp_path: Path) -> None:
    """An ESP retry of an open (same id, another request) adds nothing to any metric."""
    import json

    from ingest import create_app
    from ingest.flush.flusher import Flusher
    from tests.helpers import event, parse_config, signed_headers

    config = parse_config(
        {
            "data_dir": str(tmp_path / "data"),
            "sources": {"s": {"provider": "generic", "secret": "k" * 32}},
        },
        env={},
    )
    app = create_app(config)
    client = app.test_client()
    opened = event("open-1", "opened", message_id="m1", email="a@x.io", user_agent=HUMAN_UA)
    delivered = event("deliv-1", "delivered", message_id="m1", email="a@x.io")
    for body in ([delivered, opened], [opened], [opened]):
        raw = json.dumps(body).encode()
        response = client.post("/webhooks/s", data=raw, headers=signed_headers("k" * 32, raw))
        assert response.status_code == 200
        Flusher(config).flush()
    app.extensions["mailpulse"].spool.close()
    with open_lake(config) as lake:
        (totals,) = lake.metrics(None, metrics=["total_opens", "unique_opens"]).to_dicts()
    assert totals == {"total_opens": 1, "unique_opens": 1}


def test_two_bounces_at_the_same_instant_count_as_the_more_severe(tmp_path: Path) -> None:
    """Ties are broken the same way from the events and from the rollup: hard beats soft."""
    write_lake(tmp_path, [row("s", "bounced", "a@x.io", T0, message_id="m", bounce_class="soft")])
    rollup.build(LakeStore.local(tmp_path / "lake"))
    write_lake(
        tmp_path, [row("h", "bounced", "a@x.io", T0, message_id="m", bounce_class="hard")], batch=2
    )
    names = ["hard_bounced", "soft_bounced"]
    with open_lake(tmp_path) as lake, Lake(tmp_path, use_rollup=False) as raw:
        assert lake._state() is not None
        expected = [{"hard_bounced": 1, "soft_bounced": 0}]
        assert lake.metrics(None, metrics=names).to_dicts() == expected
        assert raw.metrics(None, metrics=names).to_dicts() == expected


def test_the_source_filter_selects_messages_of_that_source(spring: Path) -> None:
    with open_lake(spring) as lake:
        everything = lake.metrics("campaign", metrics=["sent", "delivered"])
        assert lake.metrics("campaign", metrics=["sent", "delivered"], source="test").equals(
            everything
        )
        nothing = lake.metrics(None, metrics=["sent", "delivered"], source="elsewhere")
        assert nothing.row(0) == (0, 0)
        assert lake.messages(source="elsewhere").is_empty()
        assert lake.timing(None, source="test").height == 1
