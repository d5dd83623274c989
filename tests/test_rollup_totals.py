"""The rollup's totals (analytics/totals.py): what makes them safe to add up, and when they
must not be read.

Their numbers are compared with a full regrouping of the events in
``test_metrics.py::test_the_rollup_and_newer_files_give_the_numbers_of_the_events``; these
tests cover the conditions around them.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import orjson
import polars as pl
import pytest
import sqlglot
from sqlglot import expressions as exp

from analytics import REGISTRY, Lake, agent_rules, open_lake, rollup
from analytics.totals import totals_source
from mailpulse.storage import LakeStore
from tests.lakes import T0, row, write_lake
from tests.test_metrics import H, spring_rows

# Aggregates whose values over disjoint sets of messages add up to the value over their union.
_SUMMABLE = (exp.CountIf, exp.Sum, exp.Count)


def _summable(sql: str) -> bool:
    """Whether ``sql`` is a sum of summable aggregates (``count_if(a) + count_if(b)``)."""
    tree = sqlglot.parse_one(sql, read="duckdb")
    while isinstance(tree, exp.Paren):
        tree = tree.this
    if isinstance(tree, exp.Add):
        return _summable(tree.left.sql("duckdb")) and _summable(tree.right.sql("duckdb"))
    return isinstance(tree, _SUMMABLE)


@pytest.mark.parametrize("metric", REGISTRY, ids=lambda metric: metric.name)
def test_every_metric_is_a_ratio_of_sums_the_totals_can_keep(metric: object) -> None:
    """A metric added with, say, a median would be summed wrongly from the totals."""
    for sql in (metric.numerator_sql, metric.denominator_sql):  # type: ignore[attr-defined]
        assert sql is None or _summable(sql), sql


def test_the_additivity_check_rejects_what_does_not_add_up() -> None:
    assert _summable("count_if(a) + (sum(b))")
    assert not _summable("median(x)")
    assert not _summable("count_if(a) * 2")
    assert not _summable("count(DISTINCT campaign) - count_if(a)")


@pytest.fixture
def lake_with_newer_file(tmp_path: Path) -> Path:
    """The spring lake with a rollup, and a newer file touching a stored message and a new one."""
    write_lake(tmp_path, spring_rows())
    assert rollup.build(LakeStore.local(tmp_path / "lake")) is not None
    write_lake(
        tmp_path,
        [
            row("n1", "bounced", "ann@gmail.com", T0 + 3 * H, message_id="m1", campaign="spring"),
            row("n2", "delivered", "new@x.io", T0 + H, message_id="m99", campaign="spring"),
        ],
        batch=9,
    )
    return tmp_path


def _same_numbers(data: Path) -> None:
    with open_lake(data) as lake, Lake(data, use_rollup=False) as raw:
        assert lake._state() is not None
        for by in (None, "campaign", "date", "domain"):
            assert lake.metrics(by).equals(raw.metrics(by)), by
        assert (
            lake.messages()
            .sort("message_id", "recipient")
            .equals(raw.messages().sort("message_id", "recipient"))
        )


def test_totals_from_other_definitions_are_not_read(
    lake_with_newer_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Changing what a metric counts (here an agent rule) retires the totals until the next
    build; reports still give the numbers of the events."""
    with open_lake(lake_with_newer_file) as lake:
        assert totals_source(lake.store, lake.files, lake.con) is not None
    monkeypatch.setattr(agent_rules, "SCANNER_CLICK_SECONDS", 3600)
    with open_lake(lake_with_newer_file) as lake:
        assert totals_source(lake.store, lake.files, lake.con) is None
    _same_numbers(lake_with_newer_file)


def test_a_rollup_keyed_by_another_duckdb_joins_on_the_message_itself(
    lake_with_newer_file: Path,
) -> None:
    """DuckDB does not promise its hash across versions: a probe that differs means the
    stored keys cannot be compared with this reader's."""
    store = LakeStore.local(lake_with_newer_file / "lake")
    built = rollup.current(store)
    assert built is not None and built.keyed
    (manifest,) = (lake_with_newer_file / "lake" / "messages").glob("rollup-*.json")
    data = orjson.loads(manifest.read_bytes())
    manifest.write_bytes(orjson.dumps({**data, "key_probe": rollup.key_probe() + 1}))
    found = rollup.current(store)
    assert found is not None and not found.keyed
    source = totals_source(store, rollup.events_files(store), duckdb.connect())
    assert source is not None
    assert "message_key IN" not in source and "USING (message_key)" not in source
    _same_numbers(lake_with_newer_file)


def test_a_rollup_from_before_keys_and_totals_is_still_read(lake_with_newer_file: Path) -> None:
    """Lakes keep the rollup they have until the next compaction builds a new one."""
    store = LakeStore.local(lake_with_newer_file / "lake")
    (manifest,) = (lake_with_newer_file / "lake" / "messages").glob("rollup-*.json")
    stem = manifest.name.removesuffix(".json")
    messages = manifest.with_name(f"{stem}.parquet")
    pl.read_parquet(messages).drop("message_key").write_parquet(messages)
    manifest.with_name(f"{stem}-totals.parquet").unlink()
    manifest.write_bytes(orjson.dumps({"covers": orjson.loads(manifest.read_bytes())["covers"]}))
    found = rollup.current(store)
    assert found is not None and found.totals is None and found.key_probe is None
    assert totals_source(store, rollup.events_files(store), duckdb.connect()) is None
    _same_numbers(lake_with_newer_file)


def test_a_report_reads_only_the_rows_that_hold_touched_messages(
    lake_with_newer_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The newer file mentions two messages: one stored, one new. With ranges no wider than
    the rows themselves, the report must still find the stored one, and nothing else."""
    monkeypatch.setattr(rollup, "_ROW_GROUP_ROWS", 0)
    with open_lake(lake_with_newer_file) as lake:
        lake._list()
        built, newer = rollup.covering(lake.store, lake.files) or (None, [])
        assert built is not None and built.keyed and len(newer) == 1
        ranges = rollup.touched_rows(lake.con, lake.store, built, newer)
        assert len(ranges) == 1 and ranges[0][0] == ranges[0][1]  # m1 to ann, one row
        stored = lake.con.execute(
            f"SELECT message_id FROM read_parquet('{built.path}', file_row_number = true) "
            f"WHERE file_row_number = {ranges[0][0]}"
        ).fetchall()
        assert stored == [("m1",)]
    _same_numbers(lake_with_newer_file)


def test_touched_messages_far_apart_make_separate_ranges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rollup, "_ROW_GROUP_ROWS", 0)
    write_lake(tmp_path, spring_rows())
    built = rollup.build(LakeStore.local(tmp_path / "lake"))
    assert built is not None
    # The first and the last message in the rollup's order (by first seen), touched again.
    order = pl.read_parquet(built.path).select("message_id", "recipient", "campaign")
    again = [order.row(0, named=True), order.row(-1, named=True)]
    write_lake(
        tmp_path,
        [
            row(f"late{n}", "opened", r["recipient"], T0 + 5 * H, **_ids(r))
            for n, r in enumerate(again)
        ],
        batch=9,
    )
    with open_lake(tmp_path) as lake:
        lake._list()
        found = rollup.covering(lake.store, lake.files)
        assert found is not None
        ranges = rollup.touched_rows(lake.con, lake.store, *found)
        assert ranges == [(0, 0), (order.height - 1, order.height - 1)]
    _same_numbers(tmp_path)


def _ids(stored: dict[str, object]) -> dict[str, object]:
    return {"message_id": stored["message_id"] or None, "campaign": stored["campaign"]}
