"""Normalizing in worker processes: the same lake as the flusher alone, and no orphans."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from ingest.flush import batch
from ingest.flush.flusher import Flusher, FlushResult
from ingest.flush.pool import ChunkPool
from ingest.spool import open_spool
from mailpulse.config import Config
from tests.helpers import event, lake_rows, new_secret, signed_headers, write_config
from tests.test_crash_safety import write_backlog


def spool_mixed_requests(client: FlaskClient, secret: str) -> None:
    """Requests that span several chunks: repeats across chunks, a bad event, a bad body."""
    bodies: list[Any] = [
        [event(f"w-{n}", "opened", user_agent="Mozilla/5.0", tags=["a", f"t{n}"])] for n in range(8)
    ]
    bodies += [[event("w-1"), event("w-9", "clicked", url="https://x.test/")]]  # w-1 again
    bodies += [[{"id": "bad", "type": "exploded"}], b"not json", [event("w-3")]]
    for body in bodies:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        answer = client.post("/webhooks/in_house", data=data, headers=signed_headers(secret, data))
        assert answer.status_code == 200, answer.json


def spooled_twice(
    client: FlaskClient, app: Flask, make_config: Any, secret: str, tmp_path: Path
) -> tuple[Config, Config]:
    """The mixed requests spooled, and a second data directory holding the same spool."""
    spool_mixed_requests(client, secret)
    app.extensions["mailpulse"].spool.close()
    alone: Config = make_config()
    together: Config = make_config(data_dir=str(tmp_path / "copy"))
    shutil.copytree(alone.data_dir, together.data_dir)
    return alone, together


@pytest.fixture
def spools(
    client: FlaskClient, app: Flask, make_config: Any, secret: str, tmp_path: Path
) -> tuple[Config, Config]:
    """The mixed requests spooled in two data directories: one for each way of flushing."""
    return spooled_twice(client, app, make_config, secret, tmp_path)


def lake(config: Config) -> dict[str, list[dict[str, Any]]]:
    """Every table, rows in a stable order, without the columns that name files or times."""
    tables = {name: lake_rows(config.data_dir, name) for name in ("events", "raw", "quarantine")}
    for row in tables["quarantine"]:
        row.pop("quarantined_at")
    return {
        name: sorted(rows, key=lambda row: json.dumps(row, default=str, sort_keys=True))
        for name, rows in tables.items()
    }


def test_workers_write_what_the_flusher_alone_writes(
    spools: tuple[Config, Config], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batch, "CHUNK_RECORDS", 3)  # 12 requests: four chunks
    sent: list[int] = []
    submit = ChunkPool.submit

    def counted(pool: ChunkPool, items: Any) -> Any:
        sent.append(len(items))
        return submit(pool, items)

    monkeypatch.setattr(ChunkPool, "submit", counted)
    alone, together = spools
    # Where chunks travel to and from the workers, as a flusher killed mid-pass left it.
    left = together.state_dir / "flush-chunks" / "killed"
    left.mkdir(parents=True)
    (left / "0.items").write_bytes(b"half a chunk")

    results: list[FlushResult] = [
        Flusher(alone, workers=0).flush(),
        Flusher(together, workers=1).flush(),
    ]

    assert sent, "no chunk went to a worker"
    assert not list(left.parent.iterdir()), "files left behind, old or new"
    assert results[0] == results[1]
    assert (results[0].events, results[0].duplicates, results[0].quarantined) == (9, 2, 2)
    assert lake(alone) == lake(together)
    assert {row["agent"] for row in lake_rows(together.data_dir) if row["event_id"] == "w-0"} == {
        "apple_mpp"
    }


def test_workers_normalize_the_next_batch_while_one_is_written(
    spools: tuple[Config, Config], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batch, "CHUNK_RECORDS", 2)
    ahead: list[int] = []
    send_ahead = batch.BatchBuilder.send_ahead

    def counted(builder: batch.BatchBuilder, records: Any, chunks: int) -> int:
        ahead.append(send_ahead(builder, records, chunks))
        return ahead[-1]

    monkeypatch.setattr(batch.BatchBuilder, "send_ahead", counted)
    alone, together = spools

    # Four requests a batch: w-1 and w-3 come again in later batches than their first copies.
    results: list[FlushResult] = [
        Flusher(alone, workers=0, batch_records=4).flush(),
        Flusher(together, workers=1, batch_records=4).flush(),
    ]

    assert ahead and all(sent > 0 for sent in ahead), "no batch was sent ahead"
    assert results[0] == results[1]
    assert (results[0].events, results[0].duplicates, results[0].batches) == (9, 2, 3)
    assert lake(alone) == lake(together)
    for config in (alone, together):  # each batch acknowledged by the time the pass returns
        spool = open_spool(config)
        assert spool.pending_bytes() == 0
        spool.close()


def child_processes(pid: int) -> set[int]:
    """Processes whose parent is ``pid``, from /proc."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it ended while we looked
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one CPU: the flusher starts no worker")
def test_workers_end_when_the_flusher_is_killed(tmp_path: Path) -> None:
    """kill -9 of the flusher leaves no worker waiting for work that will never come."""
    config = write_config(tmp_path, new_secret())
    write_backlog(tmp_path / "data" / "spool", 40000, 5)
    flush = subprocess.Popen(
        [sys.executable, "-m", "mailpulse", "flush", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not (workers := child_processes(flush.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert workers, "the flusher started no worker"
    finally:
        flush.send_signal(signal.SIGKILL)
        flush.wait(timeout=60)
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)


def worker_processes() -> set[int]:
    """This process's children that are pool workers (not multiprocessing's resource tracker)."""
    found = set()
    for pid in child_processes(os.getpid()):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in command:
            found.add(pid)
    return found


def test_a_worker_killed_mid_batch_fails_the_pass_and_loses_nothing(
    spools: tuple[Config, Config], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chunk's result raises, nothing of the batch is committed, and the next pass (with
    new workers) stores what the flusher alone stores."""
    monkeypatch.setattr(batch, "CHUNK_RECORDS", 6)  # 12 requests: two chunks, both sent
    sent: list[int] = []
    killed: list[int] = []
    submit = ChunkPool.submit

    def submit_then_kill(pool: ChunkPool, items: Any) -> Any:
        chunk = submit(pool, items)
        sent.append(len(items))
        deadline = time.monotonic() + 60
        while len(sent) == 2 and not killed and time.monotonic() < deadline:
            # The last chunk is in flight whatever became of the first: its result raises.
            for pid in worker_processes():
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.005)
        return chunk

    alone, together = spools
    monkeypatch.setattr(ChunkPool, "submit", submit_then_kill)

    with pytest.raises(BrokenProcessPool):
        Flusher(together, workers=1).flush()

    assert killed, "no worker was seen to kill"
    assert lake_rows(together.data_dir) == []
    monkeypatch.setattr(ChunkPool, "submit", submit)
    results = [Flusher(alone, workers=0).flush(), Flusher(together, workers=1).flush()]
    assert results[0] == results[1]
    assert results[0].events == 9
    assert lake(alone) == lake(together)
