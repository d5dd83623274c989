"""Spark, for real: the Spark SQL ``mailpulse sql`` prints, run by a local Spark session over a
generated lake, gives exactly the numbers of ``mailpulse report --format json``.

Needs the ``spark`` extra (pyspark) and a Java runtime; ``make test`` installs both
(``pip install -e '.[dev,spark]'``, and Debian's ``default-jre-headless`` through
scripts/system-deps.sh).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from analytics import DIMENSIONS
from tests.engine_lake import assert_same_metrics, make_lake, report, split_statements
from tests.helpers import lake_rows, mailpulse

pytest.importorskip(
    "pyspark",
    reason="pyspark is not installed: pip install -e '.[spark]' (make test installs it)",
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),  # a cold JVM on a busy two-core runner; about a minute here
    # pyspark's own import-time notice about pandas versions: not ours, and nothing we use.
    pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning"),
]


@pytest.fixture(scope="module")
def lake_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_lake(tmp_path_factory.mktemp("spark"), events=5000)


@pytest.fixture(scope="module")
def spark(lake_config: Path) -> Iterator[Any]:
    """A one-thread local Spark session that ran ``mailpulse sql --dialect spark``."""
    from pyspark.sql import SparkSession

    lake = lake_config.parent / "data" / "lake"
    result = mailpulse("sql", "--dialect", "spark", "--lake", str(lake))
    assert result.returncode == 0, result.stderr
    session = (
        SparkSession.builder.master("local[1]")
        .appName("mailpulse-test")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    try:
        for statement in split_statements(result.stdout):
            session.sql(statement)
        yield session
    finally:
        session.stop()
        # py4j logs "Closing down clientserver connection" from a finalizer at interpreter
        # exit, when pytest has closed the stream: nothing of the test's, only noise.
        logging.getLogger("py4j").setLevel(logging.WARNING)


def test_spark_reads_every_event(spark: Any, lake_config: Path) -> None:
    expected = len(lake_rows(lake_config.parent / "data"))
    assert spark.sql("SELECT count(*) AS n FROM events").collect()[0]["n"] == expected
    assert expected > 4000  # the generated events and the edge cases


@pytest.mark.parametrize("by", DIMENSIONS)
def test_spark_gives_the_report_numbers(spark: Any, lake_config: Path, by: str) -> None:
    rows = [row.asDict() for row in spark.sql(f"SELECT * FROM metrics_by_{by}").collect()]
    assert_same_metrics(rows, report(lake_config, by), by)
    if by in ("campaign", "date"):  # five campaigns, "edge" and none; four days and one
        assert len(rows) == (7 if by == "campaign" else 5)


def test_spark_counts_every_message(spark: Any, lake_config: Path) -> None:
    """The per-message view has one row per message, as DuckDB's does."""
    from analytics import open_lake

    with open_lake(lake_config.parent / "data") as lake:
        expected = lake.messages().height
    assert spark.sql("SELECT count(*) AS n FROM messages").collect()[0]["n"] == expected
