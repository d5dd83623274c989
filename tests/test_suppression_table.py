"""The set-based suppression table agrees with the event-by-event walk, row for row."""

from __future__ import annotations

import tempfile
from datetime import timedelta
from pathlib import Path

import polars as pl
from hypothesis import example, given, settings
from hypothesis import strategies as st

from analytics import open_lake, rollup
from analytics.suppression import suppressions
from analytics.suppression_table import _kept_table, latest, per_day, suppression_table
from mailpulse.config import SuppressionConfig
from mailpulse.storage import LakeStore
from tests.lakes import T0, row, write_lake

# (event_type, bounce_class): every kind the rules look at, and a few they must ignore.
KINDS = [
    ("delivered", None),
    ("bounced", "hard"),
    ("bounced", "soft"),
    ("bounced", "undetermined"),
    ("complained", None),
    ("unsubscribed", None),
    ("resubscribed", None),
    ("dropped", "invalid"),
    ("dropped", "bounced"),
    ("dropped", "spam"),
    ("opened", None),
]

events = st.lists(
    st.tuples(
        st.sampled_from(["a@x.test", "b@x.test", "c@y.test"]),
        st.sampled_from(KINDS),
        st.integers(0, 40),  # in half days: ties and window edges are likely
        st.sampled_from([None, "", "mailbox full", "5.1.1 user unknown"]),
        st.sampled_from([None, "4.2.2"]),
    ),
    max_size=25,
)
rules = st.builds(
    SuppressionConfig,
    hard_bounce=st.booleans(),
    complaint=st.booleans(),
    unsubscribe=st.booleans(),
    invalid_drop=st.booleans(),
    soft_bounce_limit=st.integers(0, 4),
    soft_bounce_window_days=st.integers(1, 10),
)


def _rows(
    history: list[tuple[str, tuple[str, str | None], int, str | None, str | None]],
) -> list[dict[str, object]]:
    return [
        row(
            f"e{n:03d}",
            kind,
            address,
            T0 + timedelta(hours=12 * half_days),
            bounce_class=bounce_class,
            reason=reason,
            smtp_status=status,
        )
        for n, (address, (kind, bounce_class), half_days, reason, status) in enumerate(history)
    ]


@settings(max_examples=60, deadline=None)
@given(history=events, config=rules)
def test_the_query_and_the_walk_agree(
    history: list[tuple[str, tuple[str, str | None], int, str | None, str | None]],
    config: SuppressionConfig,
) -> None:
    """Whatever the events and the rules, both give the same table, row for row."""
    rows = _rows(history)
    with tempfile.TemporaryDirectory() as directory:
        write_lake(Path(directory), rows)
        with open_lake(directory) as lake:
            walked = suppressions(lake, config)
            queried = suppression_table(lake, config)
            assert queried.equals(walked), (queried.to_dicts(), walked.to_dicts())
            one = suppression_table(lake, config, " A@X.test ")
            assert one.equals(walked.filter(pl.col("address") == "a@x.test"))


@settings(max_examples=40, deadline=None)
@given(history=events, config=rules, split=st.integers(0, 25))
@example(  # soft bounces in the rollup, then a delivery and another soft bounce after it
    history=[
        ("a@x.test", ("bounced", "soft"), 0, "mailbox full", None),
        ("a@x.test", ("bounced", "soft"), 1, None, "4.2.2"),
        ("b@x.test", ("bounced", "hard"), 1, "5.1.1 user unknown", None),
        ("a@x.test", ("delivered", None), 2, None, None),
        ("a@x.test", ("bounced", "soft"), 3, None, None),
        ("a@x.test", ("bounced", "soft"), 4, None, None),
    ],
    config=SuppressionConfig(soft_bounce_limit=3, soft_bounce_window_days=10),
    split=3,
)
def test_the_rollups_suppression_state_gives_the_walks_table(
    history: list[tuple[str, tuple[str, str | None], int, str | None, str | None]],
    config: SuppressionConfig,
    split: int,
) -> None:
    """With a rollup over the first events and a newer file holding the rest (its state kept
    per address: suppressing events and the last delivery), the table is the walk's."""
    rows = _rows(history)
    with tempfile.TemporaryDirectory() as directory:
        data = Path(directory)
        write_lake(data, rows[:split], batch=1)
        built = rollup.build(LakeStore.local(data / "lake"), rules=config)
        write_lake(data, rows[split:], batch=2)
        with open_lake(directory) as lake:
            assert (lake.address_state() is not None) == (built is not None)
            lake.refresh()
            assert (_kept_table(lake, config) is not None) == (built is not None)
            walked = suppressions(lake, config)
            queried = suppression_table(lake, config)
            assert queried.equals(walked), (queried.to_dicts(), walked.to_dicts())
            one = suppression_table(lake, config, "b@x.test")
            assert one.equals(walked.filter(pl.col("address") == "b@x.test"))
            # A table kept under other rules is not read: computed again, still the walk's.
            other = SuppressionConfig(soft_bounce_limit=config.soft_bounce_limit + 1)
            assert _kept_table(lake, other) is None
            assert suppression_table(lake, other).equals(suppressions(lake, other))


def test_per_day_and_latest(tmp_path: Path) -> None:
    """Counts per day and rule, and the newest additions first."""
    write_lake(
        tmp_path,
        [
            row("1", "bounced", "a@x.test", T0, bounce_class="hard"),
            row("2", "complained", "b@x.test", T0 + timedelta(hours=1)),
            row("3", "bounced", "c@x.test", T0 + timedelta(days=1), bounce_class="hard"),
        ],
    )
    with open_lake(tmp_path) as lake:
        table = suppression_table(lake, SuppressionConfig())
    days = per_day(table)
    assert days.rows() == [
        (T0.date(), "hard_bounce", 1),
        (T0.date(), "complaint", 1),
        ((T0 + timedelta(days=1)).date(), "hard_bounce", 1),
    ]
    assert latest(table, 2)["address"].to_list() == ["c@x.test", "b@x.test"]


def test_an_address_newer_files_mention_is_computed_again_from_its_whole_state(
    tmp_path: Path,
) -> None:
    """The rollup keeps a's hard bounce as its table row; a newer file brings an earlier
    complaint. The row must change to the complaint, with both rules, once."""
    config = SuppressionConfig()
    write_lake(tmp_path, [row("1", "bounced", "a@x.test", T0, bounce_class="hard")], batch=1)
    write_lake(tmp_path, [row("0", "bounced", "b@x.test", T0, bounce_class="hard")], batch=1)
    assert rollup.build(LakeStore.local(tmp_path / "lake"), rules=config) is not None
    write_lake(tmp_path, [row("2", "complained", "a@x.test", T0 - timedelta(hours=1))], batch=2)
    with open_lake(tmp_path) as lake:
        lake.refresh()
        assert _kept_table(lake, config) is not None
        table = suppression_table(lake, config)
        assert table.equals(suppressions(lake, config))
    assert table.select("address", "rule", "rules").rows() == [
        ("a@x.test", "complaint", ["hard_bounce", "complaint"]),
        ("b@x.test", "hard_bounce", ["hard_bounce"]),
    ]


def test_a_query_gets_only_the_parameters_it_names(tmp_path: Path) -> None:
    """Queries on the snapshot receive the parameters they name, and no parameter whose name
    merely begins another's (DuckDB refuses one a query does not use)."""
    lake = open_lake(tmp_path, create=True)
    answer = lake.sql("SELECT $window_us AS w", {"window": 1, "window_us": 2, "address": "a"})
    assert answer.to_dicts() == [{"w": 2}]
