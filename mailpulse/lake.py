"""The lake contract: what the writing side (``ingest``) and the reading side (``analytics``)
agree on about the files between them. Both import it; neither imports the other.

Table schemas, where tables and partitions live (in a :class:`~mailpulse.storage.LakeStore`:
a local directory or object storage), which files a reader counts, the flusher's status file
(written whole with :func:`mailpulse.storage.atomic_path`), and the version of the per-event
agent rules written into each decision.

Layout (DESIGN.md)::

    lake/events/date=YYYY-MM-DD/part-<batch>-<tag>.parquet      by UTC date of occurred_at
    lake/events/date=YYYY-MM-DD/merged-<batch>-<tag>.parquet    a compacted partition
    lake/raw/date=YYYY-MM-DD/...                                 by UTC date of received_at
    lake/quarantine/date=YYYY-MM-DD/...                          by UTC date of received_at

The ``date`` column lives only in the folder name (Hive partitioning), so every reader
(DuckDB, polars, Spark, Trino) gets it the same way. A file appears whole or not at all (see
:mod:`mailpulse.storage`); the batch number in a name ties the file to the flusher's journal
(see :mod:`ingest.flush.state`), and a ``merged`` file stands for every older file of its
partition (:func:`visible`), so compaction never makes a reader count a row twice.
"""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from mailpulse.storage import LakeStore, StoredFile, atomic_path

#: Written into the reason of every agent decision a rule made (``rules v2: ...``); a reader
#: tells rule decisions of an older version apart by it, ``mailpulse reclassify`` renews them.
AGENT_RULES_VERSION = 2
#: The flusher's last status snapshot, in the state directory.
STATUS_FILE = "status.json"
#: The actions dispatcher's status snapshot, in the state directory: per action, rows pending,
#: failing and dead, the circuit's state, counts of outcomes and the delivery latency histogram.
ACTIONS_STATUS_FILE = "actions.json"
#: Every data file of a table, relative to the table's folder (Hive partitions by date).
PARTITION_GLOB = "date=*/*.parquet"
_PART = "part"  # a flush batch's file
_MERGED = "merged"  # a compaction's (or reclassification's) file: replaces older batches

#: The values of the events table's enumerated columns.
EVENT_TYPES = frozenset(
    {
        "sent",
        "delivered",
        "deferred",
        "bounced",
        "dropped",
        "opened",
        "clicked",
        "complained",
        "unsubscribed",
        "resubscribed",
        "other",
    }
)
#: The life of a message as most ESPs report it (acceptance, delivery or deferral, bounce or
#: drop, engagement, complaint, unsubscribe); each provider's ``emits`` starts from it.
MESSAGE_EVENT_TYPES = EVENT_TYPES - {"resubscribed", "other"}
BOUNCE_CLASSES = frozenset({"hard", "soft", "undetermined"})
AGENTS = frozenset({"human", "apple_mpp", "gmail_proxy", "scanner", "bot", "unknown"})

TIMESTAMP = pl.Datetime("us", "UTC")
EPOCH = date(1970, 1, 1)

EVENTS_SCHEMA: dict[str, pl.DataType] = {
    "event_id": pl.String(),
    "source": pl.String(),
    "provider": pl.String(),
    "event_type": pl.String(),
    "bounce_class": pl.String(),
    "occurred_at": TIMESTAMP,
    "received_at": TIMESTAMP,
    "recipient": pl.String(),
    "recipient_domain": pl.String(),
    "message_id": pl.String(),
    "campaign": pl.String(),
    "tags": pl.List(pl.String()),
    "metadata": pl.String(),
    "url": pl.String(),
    "user_agent": pl.String(),
    "ip": pl.String(),
    "smtp_status": pl.String(),
    "reason": pl.String(),
    "agent": pl.String(),
    "agent_reason": pl.String(),
    "raw": pl.String(),
    "parser_version": pl.Int32(),
    "request_id": pl.String(),
}

RAW_SCHEMA: dict[str, pl.DataType] = {
    "request_id": pl.String(),
    "source": pl.String(),
    "provider": pl.String(),
    "received_at": TIMESTAMP,
    "remote_addr": pl.String(),
    "method": pl.String(),
    "url": pl.String(),
    "content_type": pl.String(),
    "headers": pl.String(),  # JSON object, credentials removed
    "body": pl.Binary(),
}

QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "quarantine_id": pl.String(),
    "request_id": pl.String(),
    "source": pl.String(),
    "provider": pl.String(),
    "received_at": TIMESTAMP,
    "quarantined_at": TIMESTAMP,
    "stage": pl.String(),  # "route", "parse" (whole body) or "map" (one event object)
    "reason": pl.String(),
    "headers": pl.String(),
    "payload": pl.Binary(),  # the body (parse, route) or the one event object (map)
}

SCHEMAS = {"events": EVENTS_SCHEMA, "raw": RAW_SCHEMA, "quarantine": QUARANTINE_SCHEMA}
PARTITION_TIME = {"events": "occurred_at", "raw": "received_at", "quarantine": "received_at"}


def table_dir(store: LakeStore, table: str) -> str:
    """The folder (prefix) of one table."""
    return store.path(table)


def plan_path(store: LakeStore, table: str, date: str, batch: int, *, merged: bool = False) -> str:
    """A new, not yet existing file name for ``batch`` in one partition.

    ``merged``: the file replaces every older file of its partition (compaction and
    reclassification); readers stop counting those from the moment it appears.
    """
    kind = _MERGED if merged else _PART
    name = f"{kind}-{batch:010d}-{uuid.uuid4().hex[:12]}.parquet"
    return store.path(table, f"date={date}", name)


def list_files(store: LakeStore, table: str, date: str | None = None) -> list[str]:
    """The files a reader counts, of a table or of one partition, in path order."""
    return [stored.path for stored in list_stored(store, table, date)]


def list_stored(store: LakeStore, table: str, date: str | None = None) -> list[StoredFile]:
    """:func:`list_files` with each file's modification time.

    One listing is one snapshot: within a partition, a merged file hides the files it
    replaced (those of an older batch), so a reader listing while a compaction swaps files
    counts every row once, whether or not the old files are deleted yet.
    """
    prefix = store.path(table, f"date={date}") if date else table_dir(store, table)
    return visible([s for s in store.files(prefix) if "/date=" in s.path])


def visible(found: list[StoredFile]) -> list[StoredFile]:
    """The files of ``found`` that hold the current rows (see :func:`list_stored`)."""
    named = [(stored, *_name_parts(stored.path)) for stored in found]
    merged_upto: dict[str, int] = {}
    for _stored, folder, kind, batch in named:
        if kind == _MERGED:
            merged_upto[folder] = max(merged_upto.get(folder, -1), batch)
    kept = []
    for stored, folder, kind, batch in named:
        upto = merged_upto.get(folder)
        if upto is None or batch > upto or (kind == _MERGED and batch == upto):
            kept.append(stored)
    return kept


def _name_parts(path: str) -> tuple[str, str, int]:
    """Folder, kind (part or merged) and batch number of a lake file's path."""
    folder, _, name = path.rpartition("/")
    kind, _, rest = name.partition("-")
    number = rest.partition("-")[0]
    # A file named otherwise (copied in by hand) is always counted.
    return folder, kind, int(number) if number.isdigit() else 1 << 62


def partitions(store: LakeStore, table: str) -> list[str]:
    """The dates that have a file, oldest first."""
    found = {path.rpartition("/")[0].rpartition("/date=")[2] for path in list_files(store, table)}
    return sorted(found)


def split_by_date(frame: pl.DataFrame, table: str) -> dict[str, pl.DataFrame]:
    """Rows grouped by the UTC date of the table's partition time."""
    if frame.is_empty():
        return {}
    column = PARTITION_TIME[table]
    # Partition on the day number (an integer), then name the few partitions found.
    keyed = frame.with_columns(pl.col(column).dt.epoch("d").alias("__day"))
    parts = keyed.partition_by("__day", as_dict=True, maintain_order=True)
    return {
        (EPOCH + timedelta(days=int(key[0]))).isoformat(): part.drop("__day")
        for key, part in parts.items()
    }


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` so that ``path`` shows either its old contents or all of ``data``."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


def empty_frame(table: str) -> pl.DataFrame:
    """A typed frame with no rows."""
    return pl.DataFrame(schema=SCHEMAS[table])


def write_status(state_dir: Path, status: dict[str, Any], name: str = STATUS_FILE) -> None:
    """Replace a status snapshot (read by ``/metrics`` and the dashboard): the flusher's, or
    the actions dispatcher's with ``name=ACTIONS_STATUS_FILE``."""
    write_bytes_atomic(state_dir / name, orjson.dumps(status))


def read_status(state_dir: Path, name: str = STATUS_FILE) -> dict[str, Any]:
    """The last status snapshot (the flusher's unless ``name`` says), or an empty one."""
    try:
        data = orjson.loads((state_dir / name).read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}
