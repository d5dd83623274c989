"""Lake upkeep that runs under the flusher lead (one host at a time): compaction, replay.

Compaction and reclassification rewrite events files, which retires whatever a reader built
from the old ones (the analytics rollup): they take an ``after_rewrite`` callback, run with
the lake directory while the lock is still held, and the CLI passes the rollup's rebuild.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import orjson
import polars as pl

from ingest.errors import LakeError
from ingest.flush.agents import classify, is_rule_decision
from ingest.flush.batch import BatchBuilder
from ingest.flush.flusher import Flusher, FlushResult
from ingest.flush.leader import AnyFlusherState, locked_state
from ingest.flush.state import Commit, next_batch
from ingest.spool import SpoolRecord
from mailpulse import lake
from mailpulse.storage import LakeStore

_COMPACTED_TABLES = ("events", "raw", "quarantine")
_UNIQUE_KEY = {"events": "event_id", "raw": "request_id", "quarantine": "quarantine_id"}

#: Called with the lake after files were rewritten, still under the flusher lock.
AfterRewrite = Callable[[LakeStore], object]


@dataclass
class CompactResult:
    """What a compaction did."""

    partitions: int = 0
    files_before: int = 0
    files_after: int = 0
    rows_removed: int = 0


def compact(
    flusher: Flusher,
    date: str | None = None,
    wait_seconds: float = 60.0,
    *,
    after_rewrite: AfterRewrite | None = None,
) -> CompactResult:
    """Merge each partition's files into one, keeping one row per event id.

    Each partition is its own journaled batch: the merged file appears, the commit records
    it, and only then are the small files removed, so no row is ever missing. Then
    ``after_rewrite`` runs (see the module docstring).
    """
    config = flusher.config
    result = CompactResult()
    with locked_state(config, wait_seconds) as state:
        for table in _COMPACTED_TABLES:
            dates = [date] if date else lake.partitions(config.lake_store, table)
            for day in dates:
                files = lake.list_files(config.lake_store, table, day)
                if len(files) < 2:
                    continue
                removed = _compact_partition(state, config.lake_store, table, day, files)
                result.partitions += 1
                result.files_before += len(files)
                result.files_after += 1
                result.rows_removed += removed
        if after_rewrite is not None:
            after_rewrite(config.lake_store)
    return result


def _compact_partition(
    state: AnyFlusherState, store: LakeStore, table: str, day: str, files: list[str]
) -> int:
    try:
        frame = store.read_parquet(files)
    except (OSError, pl.exceptions.PolarsError) as exc:  # the store wraps its own failures
        raise LakeError(f"cannot read partition {table}/date={day}: {exc}") from exc
    merged = frame.sort("received_at", maintain_order=True).unique(
        _UNIQUE_KEY[table], keep="first", maintain_order=True
    )
    replace_partition(state, store, table, day, files, merged)
    return frame.height - merged.height


def replace_partition(
    state: AnyFlusherState,
    store: LakeStore,
    table: str,
    day: str,
    files: list[str],
    frame: pl.DataFrame,
) -> None:
    """Swap a partition's ``files`` (all it holds) for one file holding ``frame``, as one
    journaled batch.

    The new ``merged`` file appears, the commit records the swap, and only then are the old
    files removed: a crash at any point leaves either the old files or the new one, and
    readers count the merged file alone from the moment it appears (:func:`lake.visible`).
    """
    batch = next_batch(state)
    target = lake.plan_path(store, table, day, batch, merged=True)
    state.begin(batch, [target], files)
    store.write_parquet(frame.select(list(lake.SCHEMAS[table])), target)
    store.sync_folders([target])
    state.commit(Commit(batch=batch, spool_position=None, seen_ids=[], seen_at=0, counters={}))
    state.finish(batch)


def quarantine_frame(flusher: Flusher) -> pl.DataFrame:
    """Everything in quarantine, newest first, without the payload bytes."""
    store = flusher.config.lake_store
    files = lake.list_files(store, "quarantine")
    if not files:
        return lake.empty_frame("quarantine").drop("payload", "headers")
    frame = store.read_parquet(files)
    return frame.drop("payload", "headers").sort("received_at", descending=True)


def replay_quarantine(flusher: Flusher, wait_seconds: float = 60.0) -> tuple[FlushResult, int]:
    """Normalize every quarantined payload again with today's parsers.

    What now maps goes to ``events`` (deduplicated as usual); what still fails stays in
    quarantine with its new reason. Returns the result and how many remain quarantined.
    """
    config = flusher.config
    with locked_state(config, wait_seconds) as state:
        files = lake.list_files(config.lake_store, "quarantine")
        if not files:
            return FlushResult(), 0
        frame = config.lake_store.read_parquet(files)
        builder = BatchBuilder(flusher.providers, flusher.campaign_fields)
        for row in frame.iter_rows(named=True):
            record = SpoolRecord(
                request_id=row["request_id"],
                source=row["source"],
                received_at=_micros(row["received_at"]),
                remote_addr="",
                method="POST",
                url="",
                content_type="",
                headers=orjson.loads(row["headers"]) if row["headers"] else {},
                body=b"",
            )
            stage = "map" if row["stage"] == "map" else "parse"
            builder.add_payload(record, stage=stage, payload=row["payload"])
        result = flusher.write_batch(state, builder, None, replaces=files, dedup_quarantine=False)
    return result, len(builder.quarantined)


def _micros(value: datetime) -> int:
    return int(value.timestamp() * 1_000_000)


@dataclass
class ReclassifyResult:
    """What a reclassification changed."""

    partitions: int = 0
    rows_changed: int = 0


def reclassify(
    flusher: Flusher, wait_seconds: float = 60.0, *, after_rewrite: AfterRewrite | None = None
) -> ReclassifyResult:
    """Re-run the agent rules over every open and click whose agent a rule decided.

    ESP flags are kept as they are. Each changed partition is rewritten as one journaled
    batch, like a compaction, so readers never see a partial or doubled partition. When one
    changed, ``after_rewrite`` runs (see the module docstring).
    """
    config = flusher.config
    result = ReclassifyResult()
    with locked_state(config, wait_seconds) as state:
        for day in lake.partitions(config.lake_store, "events"):
            files = lake.list_files(config.lake_store, "events", day)
            if not files:
                continue
            frame = config.lake_store.read_parquet(files)
            updated, changed = _reclassified(frame)
            if not changed:
                continue
            replace_partition(state, config.lake_store, "events", day, files, updated)
            result.partitions += 1
            result.rows_changed += changed
        if result.partitions and after_rewrite is not None:
            after_rewrite(config.lake_store)
    return result


def _reclassified(frame: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    agents = frame["agent"].to_list()
    reasons = frame["agent_reason"].to_list()
    changed = 0
    rows = zip(frame["event_type"], frame["user_agent"], frame["ip"], strict=True)
    for index, (event_type, user_agent, ip) in enumerate(rows):
        if event_type not in ("opened", "clicked") or not is_rule_decision(reasons[index]):
            continue
        agent, reason = classify(event_type, user_agent, ip)
        if (agent, reason) != (agents[index], reasons[index]):
            agents[index], reasons[index] = agent, reason
            changed += 1
    updated = frame.with_columns(
        pl.Series("agent", agents, dtype=pl.String()),
        pl.Series("agent_reason", reasons, dtype=pl.String()),
    )
    return updated, changed
