"""Open the lake with DuckDB: one call, an ``events`` view, polars frames out.

``events`` reads ``lake/events`` with Hive partitioning. The flusher writes each ``event_id``
once, so the view needs no dedup of its own; an empty or missing lake gives an empty, typed
view rather than an error, so a fresh install reports zeros instead of failing.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from analytics import queries, rollup
from analytics.errors import LakeNotFound
from ingest.lake import EVENTS_SCHEMA
from mailpulse.config import Config, load_config

_DUCKDB_TYPES = {
    pl.String: "VARCHAR",
    pl.Int32: "INTEGER",
    pl.Datetime: "TIMESTAMPTZ",
    pl.List: "VARCHAR[]",
}

When = date | datetime | str | None


class Lake:
    """A read-only view of one data directory's lake."""

    def __init__(
        self, data_dir: str | Path, *, config: Config | None = None, use_rollup: bool = True
    ) -> None:
        self.data_dir = Path(data_dir)
        self.use_rollup = use_rollup  # False: always group the events (to check the rollup)
        if not self.data_dir.is_dir():
            raise LakeNotFound(
                f"no data directory at {self.data_dir}; run `mailpulse demo` or point "
                "data_dir at a receiver's data"
            )
        self.config = config
        self.events_dir = self.data_dir / "lake" / "events"
        self.con = duckdb.connect()
        self.con.execute("SET TimeZone = 'UTC'")
        self.refresh()

    @classmethod
    def from_config(cls, config: Config | None = None) -> Lake:
        """The lake of a configuration (found the usual way when omitted)."""
        config = config or load_config()
        return cls(config.data_dir, config=config)

    def refresh(self) -> None:
        """(Re)create the ``events`` view, picking up files written since."""
        if any(self.events_dir.glob("date=*/*.parquet")):
            glob = str(self.events_dir / "date=*" / "*.parquet").replace("'", "''")
            self.con.execute(
                "CREATE OR REPLACE VIEW events AS SELECT * FROM read_parquet("
                f"'{glob}', hive_partitioning = true, union_by_name = true)"
            )
        else:
            columns = ", ".join(
                f"NULL::{_DUCKDB_TYPES[type(dtype)]} AS {name}"
                for name, dtype in EVENTS_SCHEMA.items()
            )
            self.con.execute(
                f"CREATE OR REPLACE VIEW events AS SELECT {columns}, NULL::DATE AS date WHERE false"
            )

    def sql(self, query: str, params: dict[str, Any] | None = None) -> pl.DataFrame:
        """Run ad-hoc SQL against the ``events`` view; the result as a polars frame."""
        frame: pl.DataFrame = self.con.sql(query, params=params or {}).pl()
        return frame

    def metrics(
        self,
        by: str | Sequence[str] | None = "campaign",
        *,
        metrics: Sequence[str] | None = None,
        period: str = "day",
        since: When = None,
        until: When = None,
        campaign: str | None = None,
        source: str | None = None,
    ) -> pl.DataFrame:
        """Registry metrics per ``by`` value (one overall row when ``by`` is None).

        ``by``: campaign, date, domain, mailbox_provider, provider or source, or several of them
        (``("date", "provider")``: one row per date and provider); ``period`` (day, week,
        month) applies to ``date``. Messages are selected by the UTC date they were first
        seen: ``since`` inclusive, ``until`` exclusive; ``campaign`` and ``source`` (the
        configured source name) select messages too.
        """
        query = queries.metrics_sql(by, metrics, period, self._state())
        return self.sql(query, _filters(since, until, campaign, source))

    def messages(
        self,
        *,
        since: When = None,
        until: When = None,
        campaign: str | None = None,
        source: str | None = None,
    ) -> pl.DataFrame:
        """The per-message table every metric counts (one row per message and recipient)."""
        return self.sql(
            queries.messages_sql(self._state()), _filters(since, until, campaign, source)
        )

    def timing(
        self,
        by: str | None = "campaign",
        *,
        period: str = "day",
        since: When = None,
        until: When = None,
        campaign: str | None = None,
        source: str | None = None,
    ) -> pl.DataFrame:
        """Seconds from send to delivery, and from delivery to the first human open and click."""
        return self.sql(
            queries.timing_sql(by, period, self._state()),
            _filters(since, until, campaign, source),
        )

    def _state(self) -> str | None:
        """The per-message state: from the rollup when one covers the lake, else None."""
        return rollup.state_source(self.data_dir / "lake") if self.use_rollup else None

    def close(self) -> None:
        """Close the DuckDB connection."""
        self.con.close()

    def __enter__(self) -> Lake:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def summary(self) -> dict[str, Any]:
        """Events, messages and the time span the lake covers."""
        row = self.sql(
            "SELECT count(*), count(DISTINCT campaign), min(occurred_at), max(occurred_at) "
            "FROM events"
        ).row(0)
        return {"events": row[0], "campaigns": row[1], "first": row[2], "last": row[3]}

    def __repr__(self) -> str:
        return f"Lake({str(self.data_dir)!r})"

    def _repr_html_(self) -> str:
        facts = self.summary()
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(key)}</th>"
            f"<td>{html.escape(str(value))}</td></tr>"
            for key, value in {"data directory": self.data_dir, **facts}.items()
        )
        return f"<table><caption>mailpulse lake</caption>{rows}</table>"


def open_lake(source: str | Path | Config | None = None) -> Lake:
    """Open a lake from a data directory path, a :class:`Config`, or the usual config."""
    if isinstance(source, Config):
        return Lake.from_config(source)
    if source is None:
        return Lake.from_config()
    return Lake(source)


def _filters(
    since: When, until: When, campaign: str | None, source: str | None = None
) -> dict[str, Any]:
    return {
        "since": _instant(since),
        "until": _instant(until),
        "campaign": campaign,
        "source": source,
    }


def _instant(value: When) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    if isinstance(value, str):
        value = date.fromisoformat(value)
    return datetime(value.year, value.month, value.day)
