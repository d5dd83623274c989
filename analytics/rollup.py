"""The per-message rollup: the message table kept ready, so reports need not regroup events.

Grouping ten million events into messages is most of a report's time. ``build`` stores the
mergeable per-message state (``sql/message_state.sql``) of every events file in
``lake/messages/rollup-<n>-<tag>.parquet``, with a manifest ``rollup-<n>-<tag>.json`` naming
the files it covers; the manifest is written last, so a rollup without one does not exist.
Beside it, ``rollup-<n>-<tag>-addresses.parquet`` keeps the suppression engine's state
(``sql/address_state.sql``: the events that can suppress or lift, and each address's last
delivery), so the suppression table reads a few percent of the events instead of all.

Each message row carries ``message_key``, a 64-bit hash of (message_id, recipient), so the
messages newer files mention are found by reading one integer column instead of two strings.
DuckDB does not promise its ``hash`` across versions: the manifest records the hash of a
fixed probe, and a reader whose DuckDB hashes it otherwise joins on the strings.
``rollup-<n>-<tag>-totals.parquet`` is the second level: every metric's sums per day
(``analytics/totals.py``); ``rollup-<n>-<tag>-suppressions.parquet`` the suppression table
computed from the suppression state (``analytics/suppression_sql.py``).

Readers use it only while every file it covers is still in the lake. Files the flusher added
since are grouped on their own and merged in (``sql/message_state_merge.sql``), touching only
the messages they mention. When a covered file is gone (compaction and reclassification
rewrite partitions), readers fall back to the events until the next ``build``, which those
commands run when they finish.
"""

from __future__ import annotations

import re
import tempfile
import uuid
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import duckdb
import orjson

from analytics import suppression_sql
from analytics.queries import (
    address_state_sql,
    merge_sql,
    messages_sql,
    state_sql,
    totals_definition,
    totals_sql,
)
from mailpulse import lake
from mailpulse.config import SuppressionConfig
from mailpulse.storage import LakeStore

# rollup-<n>.json (older lakes) or rollup-<n>-<tag>.json: a writer picks a name no other takes.
_ROLLUP = re.compile(r"^rollup-(\d+)(-[0-9a-f]+)?\.json$")
_NUMBER = re.compile(r"^rollup-(\d+)[-.]")  # of any file of a rollup
KEY = "hash(message_id, recipient)"  # message_key: finds a message by one integer
_KEY_PROBE = "SELECT hash('mailpulse-message', 'key@probe.example')"
_ROW_GROUP_ROWS = 122_880  # DuckDB's default: rows closer than this may share a row group
NO_FILTERS = {"since": None, "until": None, "campaign": None, "source": None}


@dataclass(frozen=True)
class Rollup:
    """One complete rollup: its Parquet file and the events files it covers."""

    path: str  # in the lake's store
    covers: frozenset[str]  # events files, relative to the lake's root
    number: int
    addresses: str | None = None  # the suppression state (rollups built before it: None)
    totals: str | None = None  # every metric's sums per day (rollups built before them: None)
    totals_definition: str | None = None  # the fingerprint of the SQL that built the totals
    key_probe: int | None = None  # the probe's hash when built (None: no message_key column)
    suppressions: str | None = None  # the suppression table of the files covered
    suppressions_definition: str | None = None  # its rules and SQL (suppression_sql.py)

    @property
    def keyed(self) -> bool:
        """Whether the message rows carry a ``message_key`` this reader's DuckDB computes
        the same way."""
        return self.key_probe is not None and self.key_probe == key_probe()

    def messages(self, store: LakeStore) -> str:
        """SQL reading the per-message state, without its key column."""
        found = self.keys(store)
        if self.key_probe is None:
            return found
        return f"(SELECT * EXCLUDE (message_key) FROM {found})"

    def keys(self, store: LakeStore) -> str:
        """SQL reading the per-message state as stored (with its key, if it has one)."""
        return read_one(store, self.path)


def rollup_dir(store: LakeStore) -> str:
    """Where rollups live."""
    return store.path("messages")


def current(store: LakeStore) -> Rollup | None:
    """The newest complete rollup, if any."""
    manifests = []
    for stored in store.files(rollup_dir(store), suffix=".json"):
        match = _ROLLUP.match(stored.path.rpartition("/")[2])
        if match:
            manifests.append((int(match.group(1)), match.group(2) or "", stored.path))
    for number, tag, manifest in sorted(manifests, reverse=True):
        parquet = store.path("messages", f"rollup-{number}{tag}.parquet")
        if store.exists(parquet):
            try:
                described = orjson.loads(store.read_bytes(manifest))
            except FileNotFoundError:  # replaced by a newer build since the listing
                continue
            return _described(store, f"rollup-{number}{tag}", described)
    return None


def _described(store: LakeStore, name: str, manifest: dict[str, Any]) -> Rollup:
    """The rollup ``name`` from its manifest, with the files beside it that exist."""

    def beside(suffix: str, definition: str | None = "") -> str | None:
        found = store.path("messages", f"{name}-{suffix}.parquet")
        return found if definition is not None and store.exists(found) else None

    return Rollup(
        store.path("messages", f"{name}.parquet"),
        frozenset(manifest["covers"]),
        int(name.split("-")[1]),
        beside("addresses"),
        beside("totals", manifest.get("totals_definition")),
        manifest.get("totals_definition"),
        manifest.get("key_probe"),
        beside("suppressions", manifest.get("suppressions_definition")),
        manifest.get("suppressions_definition"),
    )


def events_files(store: LakeStore) -> list[str]:
    """Every events file a reader counts now, relative to the lake's root."""
    return [store.relative(path) for path in lake.list_files(store, "events")]


def build(
    store: LakeStore, files: list[str] | None = None, rules: SuppressionConfig | None = None
) -> Rollup | None:
    """Write a new rollup of every events file now in the lake; remove the older ones.

    Call it where no flusher writes events files meanwhile (under the flusher lock).
    ``files`` limits it to some of them (benchmarks use it to leave newer files outside);
    ``rules`` are the ``[suppression]`` rules whose table it keeps (the defaults if None).
    """
    rules = rules or SuppressionConfig()
    files = events_files(store) if files is None else files
    previous = current(store)
    number = previous.number + 1 if previous else 1
    if not files:
        _remove_older(store, number + 1)
        return None
    name = f"rollup-{number}-{uuid.uuid4().hex[:12]}"
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        store.attach(con)
        with tempfile.TemporaryDirectory(prefix="mailpulse-rollup-") as scratch:
            parts = _write_parts(con, read_files(store, files), Path(scratch), rules)
            for suffix, written in parts:
                store.write_bytes(
                    store.path("messages", f"{name}{suffix}.parquet"), written.read_bytes()
                )
    finally:
        con.close()
    # The rollup exists once its manifest does.
    manifest = {
        "covers": files,
        "key_probe": key_probe(),
        "totals_definition": totals_definition(),
        "suppressions_definition": suppression_sql.definition(rules),
    }
    store.write_bytes(store.path("messages", f"{name}.json"), orjson.dumps(manifest))
    _remove_older(store, number)
    return _described(store, name, manifest)


def _write_parts(
    con: duckdb.DuckDBPyConnection, events: str, scratch: Path, rules: SuppressionConfig
) -> list[tuple[str, Path]]:
    """A rollup's files in ``scratch``, by the suffix of their names: the per-message state
    with its key, the totals grouped from it, the suppression state and the suppression
    table computed from that."""
    state, totals, addresses, table = (scratch / f"{part}.parquet" for part in "mtas")
    # In the order messages were first seen, so the messages a day of newer files mentions
    # (mostly sent in the days before it) lie in a few row groups: readers fetch just those.
    con.execute(f"SET temp_directory = '{quote(str(scratch))}'")  # the sort may spill here
    ordered = f"SELECT {KEY} AS message_key, * FROM ({state_sql(events)}) ORDER BY sent_at"
    _copy(con, ordered, state)
    stored = f"(SELECT * EXCLUDE (message_key) FROM read_parquet('{quote(str(state))}'))"
    _copy(con, totals_sql(messages_sql(stored)), totals, NO_FILTERS)
    _copy(con, address_state_sql(events), addresses)
    kept = f"SELECT * FROM read_parquet('{quote(str(addresses))}')"
    _copy(con, suppression_sql.table_sql(kept), table, suppression_sql.parameters(rules))
    return [("", state), ("-totals", totals), ("-addresses", addresses), ("-suppressions", table)]


def _copy(
    con: duckdb.DuckDBPyConnection, query: str, path: Path, params: dict[str, Any] | None = None
) -> None:
    """The result of ``query`` as one Parquet file at ``path``."""
    con.execute(
        f"COPY ({query}) TO '{quote(str(path))}' (FORMAT parquet, COMPRESSION zstd)", params
    )


@cache
def key_probe() -> int:
    """This DuckDB's hash of a fixed probe: equal where ``message_key`` is computed alike."""
    with duckdb.connect() as con:
        row = con.execute(_KEY_PROBE).fetchone()
    assert row is not None
    return int(row[0])


def covering(store: LakeStore, files: list[str]) -> tuple[Rollup, list[str]] | None:
    """The current rollup, if every file it covers is among ``files`` (the events files a
    query reads, relative to the root), and the files newer than it."""
    rollup = current(store)
    listed = set(files)
    if rollup is None or not rollup.covers <= listed:
        return None  # none yet, or a covered file was rewritten: the rollup is stale
    return rollup, sorted(listed - rollup.covers)


def state_source(store: LakeStore, files: list[str]) -> str | None:
    """SQL for the per-message state from the rollup and the newer of ``files`` (the events
    files a query reads, relative to the root), or None to use the events."""
    found = covering(store, files)
    if found is None:
        return None
    rollup, newer = found
    if not newer:
        return rollup.messages(store)
    # Messages the newer files mention are merged; every other message is taken as stored.
    return f"""(
    {touched_sql(store, rollup, newer)}
    SELECT * FROM {untouched_sql(store, rollup)}
    UNION ALL BY NAME
    {merge_sql("(SELECT * FROM touched UNION ALL BY NAME SELECT * FROM fresh)")}
)"""


def touched_sql(
    store: LakeStore,
    rollup: Rollup,
    newer: list[str],
    rows: list[tuple[int, int]] | None = None,
) -> str:
    """A WITH clause naming ``fresh`` (the state of the ``newer`` files), ``touched`` (the
    stored state of the messages they mention) and ``fresh_keys`` (for
    :func:`untouched_sql`).

    ``rows``, ranges of row numbers of a keyed rollup that hold every touched message
    (:func:`touched_rows`), lets the query read only the row groups within them.
    """
    fresh = f"({state_sql(read_files(store, newer))})"
    if rollup.keyed and rows is not None:
        within = " OR ".join(f"file_row_number BETWEEN {a} AND {b}" for a, b in rows)
        stored = read_one(store, rollup.path, row_numbers=True)
        return f"""WITH fresh AS {fresh},
    fresh_keys AS (SELECT DISTINCT {KEY} AS message_key FROM fresh),
    touched AS (
        SELECT * EXCLUDE (message_key, file_row_number) FROM {stored}
        WHERE ({within or "false"}) AND message_key IN (SELECT message_key FROM fresh_keys)
    )"""
    if not rollup.keyed:
        return f"""WITH fresh AS {fresh},
    fresh_keys AS (SELECT DISTINCT message_id, recipient FROM fresh),
    touched AS (
        SELECT * FROM {rollup.messages(store)} SEMI JOIN fresh_keys USING (message_id, recipient)
    )"""
    # A hash shared by two messages makes one of them "touched" needlessly: merged with no
    # fresh state, it comes out as stored, so the result stays exact.
    return f"""WITH fresh AS {fresh},
    fresh_keys AS (SELECT DISTINCT {KEY} AS message_key FROM fresh),
    touched AS (
        SELECT * EXCLUDE (message_key) FROM {rollup.keys(store)} SEMI JOIN fresh_keys
            USING (message_key)
    )"""


def touched_rows(
    con: duckdb.DuckDBPyConnection, store: LakeStore, rollup: Rollup, newer: list[str]
) -> list[tuple[int, int]]:
    """Where in a keyed rollup the messages of the ``newer`` files lie: ranges of row numbers
    (one per run of rows at most a row group apart), found by reading the key column only.

    The rollup is ordered by the time messages were first seen, and a day's events mostly
    concern messages of the days before it, so the ranges are few and short.
    """
    stored = read_one(store, rollup.path, row_numbers=True)
    mentioned = (
        f"SELECT DISTINCT coalesce(message_id, '') AS message_id, recipient "
        f"FROM {read_files(store, newer)}"
    )
    found = con.execute(
        f"SELECT file_row_number FROM {stored} "
        f"SEMI JOIN (SELECT {KEY} AS message_key FROM ({mentioned})) USING (message_key) "
        "ORDER BY file_row_number"
    ).fetchall()
    ranges: list[tuple[int, int]] = []
    for (row,) in found:
        if ranges and row - ranges[-1][1] <= _ROW_GROUP_ROWS:
            ranges[-1] = (ranges[-1][0], row)
        else:
            ranges.append((row, row))
    return ranges


def untouched_sql(store: LakeStore, rollup: Rollup) -> str:
    """The stored messages :func:`touched_sql` did not take (inside its WITH clause)."""
    if not rollup.keyed:
        return f"{rollup.messages(store)} AS r ANTI JOIN fresh_keys USING (message_id, recipient)"
    return (
        f"(SELECT * EXCLUDE (message_key) FROM {rollup.keys(store)} "
        "ANTI JOIN fresh_keys USING (message_key))"
    )


def address_source(store: LakeStore, files: list[str]) -> str | None:
    """SQL for the suppression state (``sql/address_state.sql``) of ``files`` (the events files
    a query reads) from the rollup and the files newer than it; None to read the events."""
    found = covering(store, files)
    if found is None:
        return None
    rollup, newer = found
    if rollup.addresses is None:
        return None  # built before rollups kept the suppression state
    base = f"SELECT * FROM {read_one(store, rollup.addresses)}"
    if not newer:
        return base
    return f"{base}\nUNION ALL BY NAME\n{address_state_sql(read_files(store, newer))}"


def read_files(store: LakeStore, files: list[str]) -> str:
    """SQL reading exactly these events files (paths relative to the lake's root)."""
    files_sql = listing(store, files)
    return f"read_parquet([{files_sql}], hive_partitioning = true, union_by_name = true)"


def listing(store: LakeStore, files: list[str]) -> str:
    """These files (relative to the lake's root) as a SQL list's items."""
    return ", ".join(f"'{quote(store.uri(store.path(name)))}'" for name in files)


def read_one(store: LakeStore, path: str, *, row_numbers: bool = False) -> str:
    """SQL reading one Parquet file of the store (with ``file_row_number`` if asked)."""
    option = ", file_row_number = true" if row_numbers else ""
    return f"read_parquet('{quote(store.uri(path))}'{option})"


def _remove_older(store: LakeStore, keep_from: int) -> None:
    older = []
    for stored in store.files(rollup_dir(store), suffix=""):
        number = _NUMBER.match(stored.path.rpartition("/")[2])
        if number and int(number.group(1)) < keep_from:
            older.append(stored.path)
    store.remove(older)


def quote(text: str) -> str:
    """``text`` inside single quotes of SQL."""
    return text.replace("'", "''")
