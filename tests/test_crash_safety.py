"""Promise 1 and 2 under ``kill -9``: nothing acknowledged is lost, nothing is stored twice.

The server runs with a flusher that fires every 0.2 s, so kills land in the receiver and in
the middle of flushes alike. The flusher is also killed on its own, mid-write, many times.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import duckdb
import pytest
import requests

from ingest.spool.sqlite import SqliteSpool
from tests.helpers import (
    append_all,
    event,
    in_house_request,
    mailpulse,
    new_secret,
    signed_headers,
    start_server,
    write_config,
)

pytestmark = pytest.mark.slow

CLIENTS = 8


def visible_lake(data_dir: Path) -> Counter[str]:
    """Event id -> rows, over every visible events file (each must read whole)."""
    files = sorted((data_dir / "lake" / "events").glob("date=*/*.parquet"))
    counts: Counter[str] = Counter()
    con = duckdb.connect()
    for path in files:  # one by one: a partial file would fail here
        counts.update(row[0] for row in con.sql(f"SELECT event_id FROM '{path}'").fetchall())
    return counts


def test_kill_9_of_the_whole_server_at_random_moments(tmp_path: Path) -> None:
    secret = new_secret()
    config = write_config(tmp_path, secret, flush_interval_seconds=0.2)
    rng = random.Random(20261128)
    kill_after = [rng.uniform(0.2, 2.5) for _ in range(5)]  # five different kill points
    acknowledged: set[str] = set()
    lock = threading.Lock()
    sequence = iter(range(10**9))

    for round_number, delay in enumerate(kill_after):
        server = start_server(config, tmp_path, secret, workers=2, threads=8)
        stop = threading.Event()

        def client(
            worker: int,
            server_url: str = server.base_url,
            stop: threading.Event = stop,
            round_number: int = round_number,
        ) -> None:
            session = requests.Session()
            while not stop.is_set():
                with lock:
                    n = next(sequence)
                ids = [f"r{round_number}-w{worker}-{n}-{k}" for k in range(3)]
                body = json.dumps([event(i) for i in ids]).encode()
                try:
                    response = session.post(
                        f"{server_url}/webhooks/in_house",
                        data=body,
                        headers=signed_headers(secret, body),
                        timeout=5,
                    )
                except requests.RequestException:
                    return  # the server is gone; unacknowledged, so the ESP would retry
                if response.status_code == 200:
                    with lock:
                        acknowledged.update(ids)
                    if n % 7 == 0:  # and an ESP-style retry of an acknowledged body
                        try:
                            session.post(
                                f"{server_url}/webhooks/in_house",
                                data=body,
                                headers=signed_headers(secret, body),
                                timeout=5,
                            )
                        except requests.RequestException:
                            return

        threads = [threading.Thread(target=client, args=(w,)) for w in range(CLIENTS)]
        for thread in threads:
            thread.start()
        time.sleep(delay)
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=30)
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        # After each kill whatever is visible reads whole and holds no id twice.
        assert max(visible_lake(tmp_path / "data").values(), default=1) == 1

    assert len(acknowledged) > 500, "the load never got going"
    result = mailpulse("flush", config=config)
    assert result.returncode == 0, result.stderr
    stored = visible_lake(tmp_path / "data")
    missing = acknowledged - set(stored)
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:3]}"
    doubled = [key for key, count in stored.items() if count > 1]
    assert not doubled, f"{len(doubled)} events stored twice"


def write_backlog(spool_dir: Path, requests_count: int, events_per_request: int) -> set[str]:
    """Spooled requests as the receiver appends them (many at a time, sharing commits)."""
    ids: set[str] = set()
    previous: list[dict[str, object]] = []
    records = []
    for n in range(requests_count):
        batch = [
            event(
                f"b-{n}-{k}",
                "opened" if k % 2 else "delivered",
                user_agent="Mozilla/5.0",
                campaign=f"c{n % 5}",
            )
            for k in range(events_per_request)
        ]
        if n % 10 == 9:  # an ESP retry: the previous request again
            batch = previous
        previous = batch
        ids.update(str(item["id"]) for item in batch)
        records.append(in_house_request(json.dumps(batch).encode()))
    spool = SqliteSpool(spool_dir / "spool.sqlite", max_bytes=1 << 40)
    append_all(spool, records)
    spool.close()
    return ids


def test_kill_9_of_the_flusher_mid_write(tmp_path: Path) -> None:
    """Small batches make many commits; kills land between and inside them."""
    config = write_config(tmp_path, new_secret())
    with open(config, "a") as handle:
        handle.write("\n[lake]\nflush_batch_bytes = 65536\n")
    expected = write_backlog(tmp_path / "data" / "spool", 40000, 5)
    rng = random.Random(7)
    kills = 0
    for _ in range(8):
        flush = subprocess.Popen(
            [sys.executable, "-m", "mailpulse", "flush", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.8, 2.0))
        if flush.poll() is None:
            flush.send_signal(signal.SIGKILL)
            kills += 1
        flush.wait(timeout=60)
        counts = visible_lake(tmp_path / "data")
        assert max(counts.values(), default=1) == 1, "an event is visible twice"
        leftovers = list((tmp_path / "data" / "lake").rglob("*.parquet"))
        assert all(not p.name.startswith(".") for p in leftovers)
    assert kills >= 3, "the flusher finished before it could be killed; grow the backlog"
    result = mailpulse("flush", config=config)
    assert result.returncode == 0, result.stderr
    counts = visible_lake(tmp_path / "data")
    assert set(counts) == expected
    assert set(counts.values()) == {1}
    assert not list((tmp_path / "data" / "lake").rglob(".*.tmp"))
