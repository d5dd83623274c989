"""Open the lake with DuckDB: one call, an ``events`` view, polars frames out.

``events`` reads ``lake/events`` with Hive partitioning. The flusher writes each ``event_id``
once, so the view needs no dedup of its own; an empty or missing lake gives an empty, typed
view rather than an error, so a fresh install reports zeros instead of failing.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from analytics import queries, rollup, totals
from analytics.errors import LakeNotFound
from mailpulse import lake
from mailpulse.config import Config, load_config

_DUCKDB_TYPES = {
    pl.String: "VARCHAR",
    pl.Int32: "INTEGER",
    pl.Datetime: "TIMESTAMPTZ",
    pl.List: "VARCHAR[]",
}

When = date | datetime | str | None
_ATTEMPTS = 3  # snapshots a query may take when compactions keep removing its files
_COMMENT = re.compile(r"--[^\n]*")
_READS_EVENTS = re.compile(r"(?<![/\w])events(?![/\w])")  # the view, not a lake path


class Lake:
    """A read-only view of one data directory's lake."""

    def __init__(
        self,
        data_dir: str | Path,
        *,
        config: Config | None = None,
        use_rollup: bool = True,
        create: bool = False,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.use_rollup = use_rollup  # False: always group the events (to check the rollup)
        #: The configuration the lake was opened with (its defaults when opened by path).
        self.config = config if config is not None else Config(data_dir=self.data_dir)
        if create:  # an empty lake shows zeros until the first data arrives
            self.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = self.config.lake_store
        self.store.check_reachable()
        # The demo setup before `mailpulse demo` ran is an empty lake, and creates nothing;
        # a configured or named directory that is not there is a mistake worth saying. On
        # object storage the data directory holds only a receiver's own state.
        if self.store.is_local and not self.data_dir.is_dir() and not self.config.is_demo:
            raise LakeNotFound(
                f"no data directory at {self.data_dir}; run `mailpulse demo` or point "
                "data_dir at a receiver's data"
            )
        self.con = duckdb.connect()
        self.con.execute("SET TimeZone = 'UTC'")
        self.store.attach(self.con)
        self._files: list[str] = []  # the events files of the last snapshot, root-relative
        self._view_files: list[str] | None = None  # the snapshot the ``events`` view reads
        self._list()

    @classmethod
    def from_config(cls, config: Config | None = None, *, create: bool = False) -> Lake:
        """The lake of a configuration (found the usual way when omitted).

        A configuration loaded here needs no provider and no credential: reading the lake
        does not receive webhooks.
        """
        config = config or load_config()
        return cls(config.data_dir, config=config, create=create)

    def refresh(self) -> None:
        """Take a new snapshot of the lake's files and point the ``events`` view at it (every
        query does this itself: see :meth:`run_on_snapshot`)."""
        self._list()
        self._point_view()

    def _list(self) -> None:
        self._files = rollup.events_files(self.store)

    def _point_view(self) -> None:
        """(Re)create the ``events`` view over the snapshot, unless it already reads it.

        Creating it opens every file for its schema (``union_by_name``): one request per file
        on object storage, so it is done only when a query reads ``events`` and the files
        changed.
        """
        if self._view_files == self._files:
            return
        self._view_files = list(self._files)
        if self._files:
            source = rollup.read_files(self.store, self._files)
            self.con.execute(f"CREATE OR REPLACE VIEW events AS SELECT * FROM {source}")
        else:
            columns = ", ".join(
                f"NULL::{_DUCKDB_TYPES[type(dtype)]} AS {name}"
                for name, dtype in lake.EVENTS_SCHEMA.items()
            )
            self.con.execute(
                f"CREATE OR REPLACE VIEW events AS SELECT {columns}, NULL::DATE AS date WHERE false"
            )

    def sql(self, query: str, params: dict[str, Any] | None = None) -> pl.DataFrame:
        """Run ad-hoc SQL against the ``events`` view; the result as a polars frame.

        The view reads the files listed just before the query (one snapshot); a file that a
        compaction removed in between makes the query run again on a new listing.
        """
        return self.run_on_snapshot(lambda: query, params)

    def run_on_snapshot(
        self, build: Callable[[], str], params: dict[str, Any] | None = None
    ) -> pl.DataFrame:
        """List the lake, build the query on that listing (``build`` may read
        :meth:`address_state` and the rollup's state), run it; again if a file vanished."""
        for attempt in range(_ATTEMPTS):
            try:
                self._list()
                query = build()
                if _READS_EVENTS.search(_COMMENT.sub("", query)):
                    self._point_view()  # creating the view reads the files' schema already
                frame: pl.DataFrame = self.con.sql(query, params=_named(query, params)).pl()
            except duckdb.Error as exc:  # through fsspec a missing file is a plain Error
                self._view_files = None  # the view may be what failed: made again next time
                if attempt + 1 == _ATTEMPTS or not _vanished(exc):
                    raise
                continue
            return frame
        raise AssertionError("unreachable")

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
        params = _filters(since, until, campaign, source)
        return self.run_on_snapshot(lambda: self._metrics_sql(by, metrics, period, params), params)

    def _metrics_sql(
        self,
        by: str | Sequence[str] | None,
        metrics: Sequence[str] | None,
        period: str,
        params: dict[str, Any],
    ) -> str:
        """The metrics query: from the rollup's totals where they answer it, else per message."""
        if self.use_rollup and totals.day_aligned(params):
            found = totals.totals_source(self.store, self._files, self.con)
            if found is not None:
                return queries.totals_metrics_sql(by, metrics, period, found)
        return queries.metrics_sql(by, metrics, period, self._state())

    def messages(
        self,
        *,
        since: When = None,
        until: When = None,
        campaign: str | None = None,
        source: str | None = None,
    ) -> pl.DataFrame:
        """The per-message table every metric counts (one row per message and recipient)."""
        return self.run_on_snapshot(
            lambda: queries.messages_sql(self._state()), _filters(since, until, campaign, source)
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
        return self.run_on_snapshot(
            lambda: queries.timing_sql(by, period, self._state()),
            _filters(since, until, campaign, source),
        )

    @property
    def files(self) -> list[str]:
        """The events files of the current snapshot, relative to the lake's root."""
        return list(self._files)

    def address_state(self) -> str | None:
        """SQL for the suppression state from the rollup when one covers the snapshot, else
        None (the suppression engine then reads the events)."""
        return rollup.address_source(self.store, self._files) if self.use_rollup else None

    def _state(self) -> str | None:
        """The per-message state: from the rollup when one covers the snapshot, else None."""
        return rollup.state_source(self.store, self._files) if self.use_rollup else None

    def version(self) -> tuple[int, float]:
        """How many events files the lake holds and the newest file's time (rollups included):
        changes whenever what a query reads changes, so caches key on it."""
        events = lake.list_stored(self.store, "events")
        rollups = self.store.files(rollup.rollup_dir(self.store))
        newest = max((stored.mtime for stored in events + rollups), default=0.0)
        return len(events), newest

    def ingestion_status(self) -> dict[str, Any]:
        """The flusher's last status (pending spool bytes, last flush time, events per source),
        with the quarantine's size counted now from Parquet footers, so it shows without a
        running flusher."""
        status = lake.read_status(self.config.state_dir)
        quarantine = self.store.count_rows(lake.list_files(self.store, "quarantine"))
        return {**status, "quarantine_rows": quarantine}

    def close(self) -> None:
        """Close the DuckDB connection."""
        self.con.close()

    def __enter__(self) -> Lake:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def summary(self) -> dict[str, Any]:
        """Events, campaigns and the time span the lake covers.

        The span comes from the files' Parquet statistics when every row group has them
        (reading a year of events for two timestamps takes seconds), else from the events.
        """
        events, campaigns = self.sql("SELECT count(*), count(DISTINCT campaign) FROM events").row(0)
        first = last = None
        if events:
            first, last, complete = self.run_on_snapshot(self._span_sql).row(0)
            if not complete:
                scanned = "SELECT min(occurred_at), max(occurred_at) FROM events"
                first, last = self.sql(scanned).row(0)
        return {"events": events, "campaigns": campaigns, "first": first, "last": last}

    def _span_sql(self) -> str:
        files = rollup.listing(self.store, self._files)
        return queries.sql_file("span_from_statistics.sql").format(files=files or "NULL")

    def __repr__(self) -> str:
        return f"Lake({self.store.location!r})"

    def _repr_html_(self) -> str:
        facts = self.summary()
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(key)}</th>"
            f"<td>{html.escape(str(value))}</td></tr>"
            for key, value in {"lake": self.store.location, **facts}.items()
        )
        return f"<table><caption>mailpulse lake</caption>{rows}</table>"


def open_lake(source: str | Path | Config | None = None, *, create: bool = False) -> Lake:
    """Open a lake from a data directory path, a :class:`Config`, or the usual config.

    ``create`` makes an empty data directory when there is none (the dashboard does, to show
    zeros until data arrives); otherwise a missing one raises :class:`LakeNotFound`.
    """
    if isinstance(source, Config):
        return Lake.from_config(source, create=create)
    if source is None:
        return Lake.from_config(create=create)
    return Lake(source, create=create)


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


def _named(query: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """The ``params`` that ``query`` names: a query built on the snapshot may need fewer than
    its caller passes (the rollup's suppression table needs none of the rules)."""
    return {
        name: value
        for name, value in (params or {}).items()
        if re.search(rf"\${re.escape(name)}\b", query)
    }


def _vanished(exc: Exception) -> bool:
    """Whether DuckDB failed because a listed file is gone (removed after the listing)."""
    text = str(exc).lower()
    # Local files, and objects through fsspec: gone before the open, or between open and read.
    signs = ("no such file", "not found", "no files found", "no_such_key", "resource_not_found")
    return any(sign in text for sign in signs)
