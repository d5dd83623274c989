"""The per-message rollup: the message table kept ready, so reports need not regroup events.

Grouping ten million events into messages is most of a report's time. ``build`` stores the
mergeable per-message state (``sql/message_state.sql``) of every events file in
``lake/messages/rollup-<n>.parquet``, with a manifest ``rollup-<n>.json`` naming the files it
covers; the manifest is written last, so a rollup without one does not exist.

Readers use it only while every file it covers is still in the lake. Files the flusher added
since are grouped on their own and merged in (``sql/message_state_merge.sql``), touching only
the messages they mention. When a covered file is gone (compaction and reclassification
rewrite partitions), readers fall back to the events until the next ``build``, which those
commands run when they finish.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import duckdb
import orjson

from analytics.queries import merge_sql, state_sql
from mailpulse import lake

_ROLLUP = re.compile(r"^rollup-(\d+)\.json$")


@dataclass(frozen=True)
class Rollup:
    """One complete rollup: its Parquet file and the events files it covers."""

    path: Path
    covers: frozenset[str]  # events files, relative to the lake directory


def rollup_dir(lake_dir: Path) -> Path:
    """Where rollups live."""
    return lake_dir / "messages"


def current(lake_dir: Path) -> Rollup | None:
    """The newest complete rollup, if any."""
    folder = rollup_dir(lake_dir)
    manifests = sorted(
        (int(m.group(1)), p) for p in folder.glob("rollup-*.json") if (m := _ROLLUP.match(p.name))
    )
    for number, manifest in reversed(manifests):
        parquet = folder / f"rollup-{number}.parquet"
        if parquet.exists():
            covers = frozenset(orjson.loads(manifest.read_bytes())["covers"])
            return Rollup(parquet, covers)
    return None


def events_files(lake_dir: Path) -> list[str]:
    """Every visible events file, relative to the lake directory."""
    return sorted(str(p.relative_to(lake_dir)) for p in lake.list_files(lake_dir, "events"))


def build(lake_dir: Path, files: list[str] | None = None) -> Rollup | None:
    """Write a new rollup of every events file now in the lake; remove the older ones.

    Call it where no flusher writes events files meanwhile (under the flusher lock).
    ``files`` limits it to some of them (benchmarks use it to leave newer files outside).
    """
    files = events_files(lake_dir) if files is None else files
    folder = rollup_dir(lake_dir)
    folder.mkdir(parents=True, exist_ok=True)
    previous = current(lake_dir)
    number = int(previous.path.stem.split("-")[1]) + 1 if previous else 1
    if not files:
        _remove_older(folder, number + 1)
        return None
    parquet = folder / f"rollup-{number}.parquet"
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        with lake.atomic_path(parquet) as temporary:
            con.execute(
                f"COPY ({state_sql(_read(lake_dir, files))}) "
                f"TO '{_quote(temporary)}' (FORMAT parquet, COMPRESSION zstd)"
            )
    finally:
        con.close()
    # The rollup exists once its manifest does.
    lake.write_bytes_atomic(folder / f"rollup-{number}.json", orjson.dumps({"covers": files}))
    _remove_older(folder, number)
    return Rollup(parquet, frozenset(files))


def state_source(lake_dir: Path) -> str | None:
    """SQL for the per-message state from the rollup and newer files, or None to use events."""
    rollup = current(lake_dir)
    if rollup is None:
        return None
    files = set(events_files(lake_dir))
    if not rollup.covers <= files:
        return None  # a covered file was rewritten: the rollup is stale
    base = f"read_parquet('{_quote(rollup.path)}')"
    newer = sorted(files - rollup.covers)
    if not newer:
        return base
    fresh = f"({state_sql(_read(lake_dir, newer))})"
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


def _read(lake_dir: Path, files: list[str]) -> str:
    """SQL reading exactly these events files (paths relative to the lake directory)."""
    listing = ", ".join(f"'{_quote(lake_dir / name)}'" for name in files)
    return f"read_parquet([{listing}], hive_partitioning = true)"


def _remove_older(folder: Path, keep_from: int) -> None:
    for path in folder.glob("rollup-*"):
        number = path.name.split("-")[1].split(".")[0]
        if number.isdigit() and int(number) < keep_from:
            path.unlink(missing_ok=True)


def _quote(path: Path) -> str:
    return str(path).replace("'", "''")
