"""The per-message rollup: the message table kept ready, so reports need not regroup events.

Grouping ten million events into messages is most of a report's time. ``build`` stores the
mergeable per-message state (``sql/message_state.sql``) of every events file in
``lake/messages/rollup-<n>-<tag>.parquet``, with a manifest ``rollup-<n>-<tag>.json`` naming
the files it covers; the manifest is written last, so a rollup without one does not exist.
Beside it, ``rollup-<n>-<tag>-addresses.parquet`` keeps the suppression engine's state
(``sql/address_state.sql``: the events that can suppress or lift, and each address's last
delivery), so the suppression table reads a few percent of the events instead of all.

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
from pathlib import Path

import duckdb
import orjson

from analytics.queries import address_state_sql, merge_sql, state_sql
from mailpulse import lake
from mailpulse.storage import LakeStore

# rollup-<n>.json (older lakes) or rollup-<n>-<tag>.json: a writer picks a name no other takes.
_ROLLUP = re.compile(r"^rollup-(\d+)(-[0-9a-f]+)?\.json$")
_NUMBER = re.compile(r"^rollup-(\d+)[-.]")  # of any file of a rollup


@dataclass(frozen=True)
class Rollup:
    """One complete rollup: its Parquet file and the events files it covers."""

    path: str  # in the lake's store
    covers: frozenset[str]  # events files, relative to the lake's root
    number: int
    addresses: str | None = None  # the suppression state (rollups built before it: None)


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
                covers = frozenset(orjson.loads(store.read_bytes(manifest))["covers"])
            except FileNotFoundError:  # replaced by a newer build since the listing
                continue
            addresses = store.path("messages", f"rollup-{number}{tag}-addresses.parquet")
            found = addresses if store.exists(addresses) else None
            return Rollup(parquet, covers, number, found)
    return None


def events_files(store: LakeStore) -> list[str]:
    """Every events file a reader counts now, relative to the lake's root."""
    return [store.relative(path) for path in lake.list_files(store, "events")]


def build(store: LakeStore, files: list[str] | None = None) -> Rollup | None:
    """Write a new rollup of every events file now in the lake; remove the older ones.

    Call it where no flusher writes events files meanwhile (under the flusher lock).
    ``files`` limits it to some of them (benchmarks use it to leave newer files outside).
    """
    files = events_files(store) if files is None else files
    previous = current(store)
    number = previous.number + 1 if previous else 1
    if not files:
        _remove_older(store, number + 1)
        return None
    name = f"rollup-{number}-{uuid.uuid4().hex[:12]}"
    parquet = store.path("messages", f"{name}.parquet")
    addresses = store.path("messages", f"{name}-addresses.parquet")
    source = read_files(store, files)
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        store.attach(con)
        _copy(con, store, state_sql(source), parquet)
        _copy(con, store, address_state_sql(source), addresses)
    finally:
        con.close()
    # The rollup exists once its manifest does.
    manifest = store.path("messages", f"{name}.json")
    store.write_bytes(manifest, orjson.dumps({"covers": files}))
    _remove_older(store, number)
    return Rollup(parquet, frozenset(files), number, addresses)


def _copy(con: duckdb.DuckDBPyConnection, store: LakeStore, query: str, path: str) -> None:
    """The result of ``query`` as one Parquet file at ``path``, appearing whole."""
    with tempfile.TemporaryDirectory(prefix="mailpulse-rollup-") as scratch:
        written = Path(scratch) / "part.parquet"
        con.execute(
            f"COPY ({query}) TO '{_quote(str(written))}' (FORMAT parquet, COMPRESSION zstd)"
        )
        store.write_bytes(path, written.read_bytes())


def _covering(store: LakeStore, files: list[str]) -> tuple[Rollup, list[str]] | None:
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
    found = _covering(store, files)
    if found is None:
        return None
    rollup, newer = found
    base = f"read_parquet('{_quote(store.uri(rollup.path))}')"
    if not newer:
        return base
    fresh = f"({state_sql(read_files(store, newer))})"
    # Messages the newer files mention are merged; every other message is taken as stored.
    return f"""(
    WITH fresh AS {fresh},
    touched AS (
        SELECT r.* FROM {base} AS r SEMI JOIN fresh USING (message_id, recipient)
    )
    SELECT * FROM {base} AS r ANTI JOIN fresh USING (message_id, recipient)
    UNION ALL BY NAME
    {merge_sql("(SELECT * FROM touched UNION ALL BY NAME SELECT * FROM fresh)")}
)"""


def address_source(store: LakeStore, files: list[str]) -> str | None:
    """SQL for the suppression state (``sql/address_state.sql``) of ``files`` (the events files
    a query reads) from the rollup and the files newer than it; None to read the events."""
    found = _covering(store, files)
    if found is None:
        return None
    rollup, newer = found
    if rollup.addresses is None:
        return None  # built before rollups kept the suppression state
    base = f"SELECT * FROM read_parquet('{_quote(store.uri(rollup.addresses))}')"
    if not newer:
        return base
    return f"{base}\nUNION ALL BY NAME\n{address_state_sql(read_files(store, newer))}"


def read_files(store: LakeStore, files: list[str]) -> str:
    """SQL reading exactly these events files (paths relative to the lake's root)."""
    listing = ", ".join(f"'{_quote(store.uri(store.path(name)))}'" for name in files)
    return f"read_parquet([{listing}], hive_partitioning = true, union_by_name = true)"


def _remove_older(store: LakeStore, keep_from: int) -> None:
    older = []
    for stored in store.files(rollup_dir(store), suffix=""):
        number = _NUMBER.match(stored.path.rpartition("/")[2])
        if number and int(number.group(1)) < keep_from:
            older.append(stored.path)
    store.remove(older)


def _quote(text: str) -> str:
    return text.replace("'", "''")
