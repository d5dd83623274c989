"""Open the lake with DuckDB: one call, an ``events`` view, polars frames out.

``events`` reads ``lake/events`` with Hive partitioning. The flusher writes each ``event_id``
once, so the view needs no dedup of its own; an empty or missing lake gives an empty, typed
view rather than an error, so a fresh install reports zeros instead of failing.
"""

from __future__ import annotations

from datetime import date, datetime
from importlib import resources
from pathlib import Path

import duckdb
import polars as pl

from analytics.errors import BadQuery, LakeNotFound
from ingest.lake import EVENTS_SCHEMA
from mailpulse.config import Config, load_config

#: Dimensions a report can be grouped by, as SQL over the ``events`` view.
DIMENSIONS: dict[str, str] = {
    "campaign": "campaign",
    "date": "CAST(date AS VARCHAR)",
    "domain": "recipient_domain",
    "provider": "provider",
    "source": "source",
}

_DUCKDB_TYPES = {
    pl.String: "VARCHAR",
    pl.Int32: "INTEGER",
    pl.Datetime: "TIMESTAMPTZ",
    pl.List: "VARCHAR[]",
}


def _sql(name: str) -> str:
    return resources.files("analytics").joinpath("sql", name).read_text(encoding="utf-8")


class Lake:
    """A read-only view of one data directory's lake."""

    def __init__(self, data_dir: str | Path) -> None:
        self.data_dir = Path(data_dir)
        if not self.data_dir.is_dir():
            raise LakeNotFound(f"no data directory at {self.data_dir}")
        self.events_dir = self.data_dir / "lake" / "events"
        self.con = duckdb.connect()
        self.con.execute("SET TimeZone = 'UTC'")
        self._create_views()

    @classmethod
    def from_config(cls, config: Config | None = None) -> Lake:
        """The lake of a configuration (found the usual way when omitted)."""
        return cls((config or load_config()).data_dir)

    def _create_views(self) -> None:
        files = sorted(self.events_dir.glob("date=*/*.parquet"))
        if files:
            glob = str(self.events_dir / "date=*" / "*.parquet")
            self.con.execute(
                "CREATE OR REPLACE VIEW events AS SELECT * FROM read_parquet("
                f"'{_quote(glob)}', hive_partitioning = true, union_by_name = true)"
            )
        else:
            columns = ", ".join(
                f"NULL::{_DUCKDB_TYPES[type(dtype)]} AS {name}"
                for name, dtype in EVENTS_SCHEMA.items()
            )
            self.con.execute(
                f"CREATE OR REPLACE VIEW events AS SELECT {columns}, NULL::DATE AS date WHERE false"
            )

    def refresh(self) -> None:
        """Pick up files written since the lake was opened."""
        self._create_views()

    def sql(self, query: str, params: dict[str, object] | None = None) -> pl.DataFrame:
        """Run ad-hoc SQL against the ``events`` view; the result as a polars frame."""
        frame: pl.DataFrame = self.con.sql(query, params=params or {}).pl()
        return frame

    def rates(
        self,
        by: str = "campaign",
        *,
        since: date | datetime | None = None,
        until: date | datetime | None = None,
        campaign: str | None = None,
    ) -> pl.DataFrame:
        """Delivered, bounced and the headline rates per ``by`` value.

        ``since`` is inclusive and ``until`` exclusive, both UTC.
        """
        if by not in DIMENSIONS:
            raise BadQuery(f"cannot group by {by!r}; choose one of {', '.join(DIMENSIONS)}")
        query = _sql("campaign_rates.sql").replace("{dimension}", DIMENSIONS[by])
        params = {"since": _instant(since), "until": _instant(until), "campaign": campaign}
        frame: pl.DataFrame = self.con.sql(query, params=params).pl()
        return frame.rename({"dimension": by})

    def close(self) -> None:
        """Close the DuckDB connection."""
        self.con.close()

    def __repr__(self) -> str:
        return f"Lake({str(self.data_dir)!r})"


def open_lake(source: str | Path | Config | None = None) -> Lake:
    """Open a lake from a data directory path, a :class:`Config`, or the usual config."""
    if isinstance(source, Config):
        return Lake.from_config(source)
    if source is None:
        return Lake.from_config()
    return Lake(source)


def _instant(value: date | datetime | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime(value.year, value.month, value.day)


def _quote(text: str) -> str:
    return text.replace("'", "''")
