"""How each SQL engine reads the lake's events: the one statement per engine that is not
translated, because it is about storage, not about metrics.

Every engine reads ``<lake>/events`` as Hive-partitioned Parquet (``date=YYYY-MM-DD``
folders, see :mod:`mailpulse.lake`); what differs is how it is told so:

* DuckDB and Spark: a view over the files (session-scoped in Spark: a temporary view);
* Trino (Hive connector): an external table, whose partitions the catalog must register;
* BigQuery: an external table over Cloud Storage with Hive partition discovery;
* Snowflake: an external table over a stage, each column taken from the Parquet ``VALUE``.

Column types come from the lake's schema (:data:`mailpulse.lake.EVENTS_SCHEMA`), written in
each engine's SQL by sqlglot. Timestamps are UTC instants; engines without a time-zone-aware
column type in external tables (Trino's Hive connector, Snowflake) get the UTC wall clock,
which is what every date and interval in the metrics uses.
"""

from __future__ import annotations

import polars as pl
from sqlglot import exp

from analytics.errors import BadQuery
from mailpulse import lake

#: The engines ``mailpulse sql`` writes for, by sqlglot dialect name.
DIALECTS: dict[str, str] = {
    "spark": "Spark SQL",
    "trino": "Trino",
    "bigquery": "BigQuery",
    "snowflake": "Snowflake",
    "duckdb": "DuckDB",
}

# The lake's column types in DuckDB's SQL, rendered in each dialect by sqlglot.
_TYPES: dict[type[pl.DataType], str] = {
    pl.String: "VARCHAR",
    pl.Int32: "INT",
    pl.Datetime: "TIMESTAMP",
    pl.List: "VARCHAR[]",
}


class BadLocation(BadQuery):
    """The lake's location is not one the engine can read."""


def location_problem(dialect: str, location: str) -> str | None:
    """Why ``location`` cannot hold the lake for ``dialect``, or None when it can."""
    if dialect == "bigquery" and not location.startswith("gs://"):
        return "BigQuery external tables read Cloud Storage: give gs://bucket/prefix"
    if dialect == "snowflake" and not location.startswith("@"):
        return "Snowflake reads files through a stage: give @stage or @stage/prefix"
    if dialect == "trino" and "://" not in location:
        return (
            "Trino's Hive catalog reads a URL it can reach: give s3://bucket/prefix "
            "(or hdfs://, gs://, abfs://, file:///path)"
        )
    return None


def session_statements(dialect: str) -> list[str]:
    """Settings the views need in ``dialect``'s session: UTC, where the session's time zone
    decides the day of a timestamp (DuckDB's TIMESTAMPTZ, Spark's TIMESTAMP). BigQuery's days
    are UTC, and Trino and Snowflake read UTC wall-clock timestamps, so they need none."""
    why = "-- Days are UTC days, as in mailpulse report.\n"
    settings = {
        "duckdb": [f"{why}SET TimeZone = 'UTC'"],
        "spark": [f"{why}SET spark.sql.session.timeZone = UTC"],
    }
    return settings.get(dialect, [])


def events_statement(dialect: str, location: str) -> str:
    """The statement that makes ``events`` readable in ``dialect`` (a view or a table).

    Raises:
        BadQuery: an unknown dialect.
        BadLocation: a location the engine cannot read (see :func:`location_problem`).
    """
    if dialect not in DIALECTS:
        raise BadQuery(f"unknown dialect {dialect!r}; choose one of {', '.join(DIALECTS)}")
    problem = location_problem(dialect, location)
    if problem:
        raise BadLocation(f"--lake {location}: {problem}")
    # Joined as text: a URL such as s3://bucket/lake is not a local path.
    return _STATEMENTS[dialect](f"{location.rstrip('/')}/events", dialect)


def _string(value: str, dialect: str) -> str:
    """A string literal, quoted and escaped the way ``dialect`` wants."""
    return exp.Literal.string(value).sql(dialect=dialect)


def _type(dtype: pl.DataType, dialect: str) -> str:
    return exp.DataType.build(_TYPES[type(dtype)], dialect="duckdb").sql(dialect=dialect)


def _duckdb(events: str, dialect: str) -> str:
    files = _string(f"{events}/{lake.PARTITION_GLOB}", dialect)
    # No semicolon in a comment: scripts are split into statements at each ';' (spark-sql).
    return (
        "-- events: the lake's Parquet files, the date=YYYY-MM-DD folders give the date column.\n"
        "CREATE OR REPLACE VIEW events AS\n"
        f"SELECT * FROM read_parquet({files}, hive_partitioning = true, union_by_name = true)"
    )


def _spark(events: str, dialect: str) -> str:
    # mergeSchema: files written before a column was added still read, with NULLs in it.
    return (
        "-- events: the lake's Parquet files (partition discovery gives the date column).\n"
        "-- Temporary views live as long as the Spark session.\n"
        "CREATE OR REPLACE TEMPORARY VIEW events\n"
        f"USING parquet OPTIONS (path {_string(events, dialect)}, mergeSchema 'true')"
    )


def _trino(events: str, dialect: str) -> str:
    columns = ",\n    ".join(
        f"{name} {_type(dtype, dialect)}" for name, dtype in lake.EVENTS_SCHEMA.items()
    )
    return (
        "-- events: an external table of the Hive catalog over the lake (the partition column\n"
        "-- comes last). Then register the date partitions, again after new days arrive:\n"
        "--   CALL system.sync_partition_metadata('<schema>', 'events', 'FULL')\n"
        f"CREATE TABLE IF NOT EXISTS events (\n    {columns},\n    date DATE\n)\n"
        f"WITH (external_location = {_string(events, dialect)}, format = 'PARQUET', "
        "partitioned_by = ARRAY['date'])"
    )


def _bigquery(events: str, dialect: str) -> str:
    uris = _string(f"{events}/*", dialect)
    return (
        "-- events: an external table over Cloud Storage. Hive partition discovery gives the\n"
        "-- date column, the Parquet files the others.\n"
        "CREATE OR REPLACE EXTERNAL TABLE events\n"
        "WITH PARTITION COLUMNS (date DATE)\n"
        f"OPTIONS (format = 'PARQUET', uris = [{uris}], "
        f"hive_partition_uri_prefix = {_string(events, dialect)}, enable_list_inference = true)"
    )


def _snowflake(events: str, dialect: str) -> str:
    def column(name: str, dtype: pl.DataType) -> str:
        kind = "ARRAY" if isinstance(dtype, pl.List) else _type(dtype, dialect)
        return f"{name} {kind} AS (VALUE:{name}::{kind})"

    date = "TO_DATE(SPLIT_PART(SPLIT_PART(METADATA$FILENAME, 'date=', 2), '/', 1))"
    columns = ",\n    ".join(column(name, dtype) for name, dtype in lake.EVENTS_SCHEMA.items())
    return (
        "-- events: an external table over the stage. The date column comes from the folder\n"
        "-- name. Refresh it after new files arrive: ALTER EXTERNAL TABLE events REFRESH\n"
        f"CREATE OR REPLACE EXTERNAL TABLE events (\n    date DATE AS ({date}),\n    {columns}\n)\n"
        f"PARTITION BY (date)\nLOCATION = {events}/\n"
        "FILE_FORMAT = (TYPE = PARQUET)\nAUTO_REFRESH = FALSE"
    )


_STATEMENTS = {
    "duckdb": _duckdb,
    "spark": _spark,
    "trino": _trino,
    "bigquery": _bigquery,
    "snowflake": _snowflake,
}
