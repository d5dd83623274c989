"""``mailpulse sql``: the registry's views in every engine's SQL, translated by sqlglot.

Every statement parses back in its dialect; every metric of the registry is a column of every
metrics view in every dialect (a metric that cannot be translated fails here, by name); the
DuckDB script, run by DuckDB, gives the numbers of ``mailpulse report``. Spark runs its script
in tests/test_spark.py.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
import sqlglot
from sqlglot import exp

from analytics import DIMENSIONS, REGISTRY, Metric, dialects
from analytics.dialects import UntranslatableSQL, translate_metric
from analytics.engines import DIALECTS
from tests.engine_lake import assert_same_metrics, make_lake, report, split_statements
from tests.helpers import mailpulse

#: A lake location each engine can read.
LAKES = {
    "spark": "s3a://mail-lake/mailpulse/lake",
    "trino": "s3://mail-lake/mailpulse/lake",
    "bigquery": "gs://mail-lake/mailpulse/lake",
    "snowflake": "@mail_lake/mailpulse/lake",
    "duckdb": "/srv/mailpulse/data/lake",
}
VIEWS = ["messages", *(f"metrics_by_{by}" for by in DIMENSIONS), "metrics_total"]


def test_every_dialect_is_covered() -> None:
    assert set(LAKES) == set(DIALECTS) == {"spark", "trino", "bigquery", "snowflake", "duckdb"}


@pytest.fixture(scope="module")
def printed() -> dict[str, str]:
    """``mailpulse sql --dialect <d> --lake <lake>`` for every dialect."""
    scripts = {}
    for dialect, lake in LAKES.items():
        result = mailpulse("sql", "--dialect", dialect, "--lake", lake)
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        scripts[dialect] = result.stdout
    return scripts


def _views(script: str, dialect: str) -> dict[str, exp.Create]:
    statements = sqlglot.parse(script, read=dialect)
    return {
        statement.this.name: statement
        for statement in statements
        if isinstance(statement, exp.Create) and statement.kind == "VIEW"
    }


@pytest.mark.parametrize("dialect", LAKES)
def test_every_statement_parses_back(printed: dict[str, str], dialect: str) -> None:
    script = printed[dialect]
    statements = sqlglot.parse(script, read=dialect)
    assert all(statement is not None for statement in statements)
    # One statement per ';' at a line's end, which is where spark-sql and our runners split.
    texts = split_statements(script)
    assert len(statements) == len(texts)
    # The views are real statements of the dialect (not text sqlglot passes through) ...
    views = _views(script, dialect)
    assert [name for name in views if name != "events"] == VIEWS
    assert statements[-len(VIEWS) :] == [views[name] for name in VIEWS]
    # ... after one statement that makes the lake's events readable, at the location given
    # (sqlglot reads BigQuery's EXTERNAL TABLE DDL as a command it keeps whole), and in DuckDB
    # and Spark one that makes days UTC days.
    events = len(statements) - len(VIEWS) - 1
    assert isinstance(statements[events], exp.Create | exp.Command)
    assert f"{LAKES[dialect]}/events" in texts[events]
    assert all(isinstance(setting, exp.Set) for setting in statements[:events])
    assert ("UTC" in " ".join(texts[:events])) == (dialect in ("duckdb", "spark"))


@pytest.mark.parametrize("dialect", LAKES)
@pytest.mark.parametrize("metric", REGISTRY, ids=lambda metric: metric.name)
def test_every_metric_is_a_column_of_every_metrics_view(
    printed: dict[str, str], dialect: str, metric: Metric
) -> None:
    assert f" AS {metric.name}" in translate_metric(metric, dialect)
    for name, view in _views(printed[dialect], dialect).items():
        if name.startswith("metrics_"):
            assert metric.name in view.expression.named_selects, name


@pytest.mark.parametrize("dialect", LAKES)
def test_each_metrics_view_has_its_dimension(printed: dict[str, str], dialect: str) -> None:
    views = _views(printed[dialect], dialect)
    for by in DIMENSIONS:
        columns = views[f"metrics_by_{by}"].expression.named_selects
        assert columns == [by, *(metric.name for metric in REGISTRY)]
    assert views["metrics_total"].expression.named_selects == [m.name for m in REGISTRY]


def test_a_metric_that_cannot_be_translated_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """A function sqlglot does not know, or one whose translation nobody checked, stops the
    script with the metric's name: adding such a metric fails the tests above."""
    unknown = Metric("kahan_opens", "count", "d", "n", "fsum(open_events)")
    unchecked = Metric("median_opens", "count", "d", "n", "median(open_events)")
    for metric in (unknown, unchecked):
        for dialect in LAKES:
            with pytest.raises(UntranslatableSQL, match=f"metric '{metric.name}' uses"):
                translate_metric(metric, dialect)
    monkeypatch.setattr(dialects, "REGISTRY", (*REGISTRY, unknown))
    with pytest.raises(UntranslatableSQL, match="metric 'kahan_opens' uses fsum"):
        dialects.script("trino", LAKES["trino"])


def test_epoch_us_is_written_for_each_engine(printed: dict[str, str]) -> None:
    """The one DuckDB function sqlglot does not map everywhere."""
    expected = {
        "duckdb": "EPOCH_US(occurred_at)",
        "spark": "UNIX_MICROS(occurred_at)",
        "bigquery": "UNIX_MICROS(occurred_at)",
        "trino": "CAST(ROUND(TO_UNIXTIME(WITH_TIMEZONE(occurred_at, 'UTC')) * 1000000) AS BIGINT)",
        "snowflake": "DATE_PART(EPOCH_MICROSECOND, occurred_at)",
    }
    for dialect, text in expected.items():
        assert text in printed[dialect], dialect
        assert "EPOCH_US" not in printed[dialect].upper() or dialect == "duckdb"


@pytest.fixture(scope="module")
def lake_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_lake(tmp_path_factory.mktemp("engines"))


@pytest.fixture(scope="module")
def duckdb_views(lake_config: Path) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection that ran ``mailpulse sql --dialect duckdb`` (default lake)."""
    result = mailpulse("sql", "--dialect", "duckdb", config=lake_config)
    assert result.returncode == 0, result.stderr
    assert f"'{lake_config.parent / 'data' / 'lake' / 'events'}/" in result.stdout
    con = duckdb.connect()
    con.execute("SET TimeZone = 'Pacific/Auckland'")  # the script sets UTC, as report does
    for statement in split_statements(result.stdout):
        con.execute(statement)
    return con


@pytest.mark.parametrize("by", DIMENSIONS)
def test_duckdb_script_gives_the_report_numbers(
    duckdb_views: duckdb.DuckDBPyConnection, lake_config: Path, by: str
) -> None:
    relation = duckdb_views.sql(f"SELECT * FROM metrics_by_{by}")
    rows = [dict(zip(relation.columns, row, strict=True)) for row in relation.fetchall()]
    assert_same_metrics(rows, report(lake_config, by), by)
    if by in ("campaign", "date"):  # five campaigns and "edge" and none; four days and one
        assert len(rows) == (7 if by == "campaign" else 5)


def test_bad_dialect_is_a_usage_error() -> None:
    result = mailpulse("sql", "--dialect", "oracle")
    assert result.returncode == 2
    assert result.stdout == ""
    first = result.stderr.splitlines()[0]
    assert first.startswith("mailpulse: Invalid value for '--dialect': 'oracle' is not one of")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("dialect", "lake", "says"),
    [
        ("bigquery", "s3://bucket/lake", "gs://bucket/prefix"),
        ("snowflake", "s3://bucket/lake", "@stage"),
        ("trino", "/srv/lake", "s3://bucket/prefix"),
    ],
)
def test_a_lake_the_engine_cannot_read_is_refused(dialect: str, lake: str, says: str) -> None:
    result = mailpulse("sql", "--dialect", dialect, "--lake", lake)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("mailpulse: Invalid value for --lake: ")
    assert says in result.stderr.splitlines()[0]
