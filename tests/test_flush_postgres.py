"""The flusher on the shared PostgreSQL engine: one dedup index, one journal, one lead.

Several "hosts" here are configurations with data directories of their own that share the
database (``[spool] engine = "postgres"``) and the lake directory (``[lake] url``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import psycopg
import pytest

from ingest.errors import FlusherBusy, LakeError
from ingest.flush.flusher import Flusher, FlushResult
from ingest.flush.leader import AnyFlusherState, locked_state
from ingest.flush.pg_state import PostgresFlusherState
from ingest.flush.state import Commit, FlusherState
from ingest.spool.postgres import PostgresSpool
from mailpulse import lake
from mailpulse.config import Config
from mailpulse.demo import free_port
from mailpulse.storage import LakeStore
from tests.helpers import append_all, event, in_house_request, new_secret, parse_config

DAY = "2026-11-27"


def host_config(
    tmp_path: Path, host: str, pg_url: str, lake_dir: Path, secret: str, **lake_keys: Any
) -> Config:
    """One receiver host: its own data directory, the shared database and lake."""
    return parse_config(
        {
            "data_dir": str(tmp_path / host),
            "spool": {"engine": "postgres", "url": pg_url},
            "lake": {"url": str(lake_dir), **lake_keys},
            "sources": {"in_house": {"provider": "generic", "secret": secret}},
        },
        env={},
    )


def spool_backlog(pg_url: str, bodies: list[list[dict[str, Any]]]) -> None:
    """Append one request per body to the shared spool, as receivers do."""
    spool = PostgresSpool(pg_url, max_bytes=1 << 40)
    try:
        append_all(spool, [in_house_request(json.dumps(body).encode()) for body in bodies])
    finally:
        spool.close()


def visible_lake(lake_dir: Path, table: str = "events") -> Counter[str]:
    """Id -> rows over every visible file of ``table``, each read whole on its own."""
    key = "event_id" if table == "events" else "request_id"
    counts: Counter[str] = Counter()
    con = duckdb.connect()
    for path in sorted((lake_dir / table).glob("date=*/*.parquet")):
        counts.update(row[0] for row in con.sql(f"SELECT {key} FROM '{path}'").fetchall())
    return counts


def journal(pg_url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(pg_url) as db:
        return db.execute("SELECT batch, phase, added FROM mailpulse_journal").fetchall()


def plan(tmp_path: Path, batch: int) -> Path:
    """A new file name of ``batch`` in the test lake under ``tmp_path``."""
    return Path(lake.plan_path(LakeStore.local(tmp_path / "lake"), "events", DAY, batch))


def write_file(path: Path) -> Path:
    LakeStore.local(path.parents[2]).write_parquet(pl.DataFrame({"x": [1]}), str(path))
    return path


# -- the state: the same contract as the SQLite one


@pytest.fixture(params=["local", "postgres"])
def open_state(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[], AnyFlusherState]]:
    """Opens the state of one engine (again: a restart); every one opened is closed after."""
    opened: list[AnyFlusherState] = []

    def open_one() -> AnyFlusherState:
        state: AnyFlusherState
        if request.param == "local":
            state = FlusherState(tmp_path / "state", LakeStore.local(tmp_path / "lake"))
        else:
            state = PostgresFlusherState(
                request.getfixturevalue("pg_url"), LakeStore.local(tmp_path / "lake")
            )
        opened.append(state)
        return state

    yield open_one
    for state in opened:
        state.close()


def commit(batch: int, position: int | None, ids: list[str], at: int, **counters: int) -> Commit:
    return Commit(batch, position, ids, at, dict(counters))


def test_a_commit_moves_position_ids_counters_and_batch_together(
    open_state: Callable[[], AnyFlusherState], tmp_path: Path
) -> None:
    state = open_state()
    assert (state.spool_position(), state.last_batch(), state.meta("nothing")) == (0, 0, 0)
    state.begin(1, [str(tmp_path / "a.parquet")])
    state.commit(commit(1, 10, ["e1", "e2", "e2"], 100, **{"events:s:stored": 2}))
    state.finish(1)
    # A lower position never moves it back; counters add up; the batch number follows.
    state.begin(2, [])
    state.commit(commit(2, 5, ["e3"], 100, **{"events:s:stored": 1, "implausible:s": 4}))
    state.finish(2)
    assert (state.spool_position(), state.last_batch()) == (10, 2)
    assert state.already_seen(["e1", "e3", "e9"]) == {"e1", "e3"}
    assert state.already_seen([]) == set()
    assert state.counters("events:") == {"s:stored": 3}
    assert state.counters("implausible:") == {"s": 4}
    assert state.recover() == 0  # finished batches leave no journal entry
    state.set_meta("last_prune", 7)
    assert open_state().meta("last_prune") == 7  # committed for the next opener too


def test_replaced_files_are_deleted_only_after_the_commit(
    open_state: Callable[[], AnyFlusherState], tmp_path: Path
) -> None:
    old = write_file(plan(tmp_path, 1))
    new = plan(tmp_path, 2)
    state = open_state()
    state.begin(2, [str(new)], [str(old)])
    write_file(new)
    state.commit(commit(2, None, [], 0))
    assert old.exists()
    state.finish(2)
    assert new.exists() and not old.exists()


def test_recovery_removes_files_of_an_uncommitted_batch(
    open_state: Callable[[], AnyFlusherState], tmp_path: Path
) -> None:
    orphan = plan(tmp_path, 1)
    crashed = open_state()
    crashed.begin(1, [str(orphan)])
    write_file(orphan)
    crashed.close()
    state = open_state()
    assert state.recover() == 1
    assert not orphan.exists()
    assert state.last_batch() == 0
    state.begin(1, [])  # the batch number is free again
    state.commit(commit(1, 3, ["x"], 0))
    assert state.last_batch() == 1


def test_recovery_finishes_a_committed_replacement(
    open_state: Callable[[], AnyFlusherState], tmp_path: Path
) -> None:
    old = write_file(plan(tmp_path, 1))
    new = plan(tmp_path, 2)
    crashed = open_state()
    crashed.begin(2, [str(new)], [str(old)])
    write_file(new)
    crashed.commit(commit(2, None, [], 0))
    crashed.close()  # died between its commit and finish
    assert open_state().recover() == 1
    assert new.exists() and not old.exists()


def test_pruning_forgets_only_ids_seen_before_the_cut(
    open_state: Callable[[], AnyFlusherState],
) -> None:
    state = open_state()
    state.begin(1, [])
    state.commit(commit(1, 1, ["old-1", "old-2"], 100))
    state.begin(2, [])
    state.commit(commit(2, 2, ["new-1"], 200))
    assert state.prune_seen(150) == 2
    assert state.already_seen(["old-1", "old-2", "new-1"]) == {"new-1"}


# -- the shared state's failures and its fence


def test_a_leader_that_lost_its_session_commits_nothing_and_removes_its_files(
    pg_url: str, tmp_path: Path
) -> None:
    """The lead lives in the state's session: once the session is gone (the host was cut
    off, another took over), the old leader cannot commit, and it does not reconnect."""
    leader = PostgresFlusherState(pg_url, LakeStore.local(tmp_path / "lake"))
    assert leader.try_lead()
    written = plan(tmp_path, 1)
    leader.begin(1, [str(written)])
    write_file(written)
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (leader.db.info.backend_pid,))
    with pytest.raises(LakeError) as failed:
        leader.commit(commit(1, 5, ["e1"], 0))
    assert not written.exists()
    assert "127.0.0.1" not in str(failed.value) and pg_url not in str(failed.value)
    with pytest.raises(LakeError):
        leader.last_batch()  # no new session behind the lead's back
    leader.close()
    successor = PostgresFlusherState(pg_url, LakeStore.local(tmp_path / "lake"))
    assert successor.try_lead()  # the lost session took the lock with it
    assert successor.recover() == 1
    assert (successor.last_batch(), successor.already_seen(["e1"])) == (0, set())
    successor.close()


def test_a_failure_to_connect_names_no_password() -> None:
    url = f"postgresql://mailpulse:pg-password-{new_secret()}@127.0.0.1:{free_port()}/none"
    with pytest.raises(LakeError) as failed:
        PostgresFlusherState(url, LakeStore.local(Path("lake")))
    assert "pg-password" not in str(failed.value)
    assert "cannot be reached" in str(failed.value)
    assert failed.value.__cause__ is None and failed.value.__suppress_context__


# -- one lead across hosts


@pytest.fixture
def shared_lake(tmp_path: Path) -> Path:
    return tmp_path / "shared" / "lake"


@pytest.fixture
def host_flusher() -> Iterator[Callable[[Config], Flusher]]:
    """Builds a host's flusher (in this process alone); closes its spool afterwards."""
    made: list[Flusher] = []

    def make(config: Config) -> Flusher:
        made.append(Flusher(config, workers=0))
        return made[-1]

    yield make
    for flusher in made:
        flusher.spool.close()


def test_one_lead_across_hosts_and_a_retry_on_another_host_is_a_duplicate(
    tmp_path: Path, pg_url: str, shared_lake: Path, host_flusher: Callable[[Config], Flusher]
) -> None:
    secret = new_secret()
    a, b = (host_config(tmp_path, h, pg_url, shared_lake, secret) for h in ("a", "b"))
    with locked_state(a) as state:
        assert isinstance(state, PostgresFlusherState)
        with pytest.raises(FlusherBusy), locked_state(b, wait_seconds=0.2):
            pass
        assert host_flusher(b).try_flush() is None
    spool_backlog(pg_url, [[event("r-1"), event("r-2")]])
    first = host_flusher(a).flush(wait_seconds=5)
    spool_backlog(pg_url, [[event("r-2"), event("r-3")]])  # the ESP retried; b received it
    second = host_flusher(b).flush(wait_seconds=5)
    assert (first.events, second.events, second.duplicates) == (2, 1, 1)
    assert visible_lake(shared_lake) == Counter({"r-1": 1, "r-2": 1, "r-3": 1})
    assert not (tmp_path / "a" / "lake").exists() and not (tmp_path / "b" / "lake").exists()


def test_two_hosts_flushing_at_once_store_every_event_exactly_once(
    tmp_path: Path, pg_url: str, shared_lake: Path, host_flusher: Callable[[Config], Flusher]
) -> None:
    """Receivers keep spooling (ESP retries included) while two hosts' flushers race."""
    secret = new_secret()
    flushers = {
        host: host_flusher(
            host_config(tmp_path, host, pg_url, shared_lake, secret, flush_batch_bytes=4096)
        )
        for host in ("a", "b")
    }
    produced, done = threading.Event(), threading.Event()
    errors: list[BaseException] = []
    results: dict[str, list[FlushResult | None]] = {host: [] for host in flushers}
    expected: set[str] = set()
    requests = 0

    def produce() -> None:
        nonlocal requests
        bodies: list[list[dict[str, Any]]] = []
        for round_number in range(30):
            fresh = [[event(f"n{round_number}-{k}-{j}") for j in range(3)] for k in range(8)]
            retries = bodies[-12:-10]  # two bodies sent earlier, likely flushed already
            bodies += fresh
            expected.update(str(item["id"]) for body in fresh for item in body)
            spool_backlog(pg_url, fresh + retries)
            requests += len(fresh) + len(retries)
            time.sleep(0.05)

    def flush(host: str) -> None:
        flusher, deadline = flushers[host], time.monotonic() + 180
        while time.monotonic() < deadline:
            drained_after = produced.is_set()  # read first: a pass after this saw everything
            result = flusher.try_flush()
            results[host].append(result)
            if drained_after and result is not None:
                return
            time.sleep(0.005)
        raise AssertionError(f"host {host} did not finish")

    def read_lake() -> None:
        while not done.is_set():  # meanwhile every visible file reads whole, no id twice
            assert max(visible_lake(shared_lake).values(), default=1) == 1
            time.sleep(0.05)

    def guarded(work: Callable[..., None], *args: str) -> threading.Thread:
        def run() -> None:
            try:
                work(*args)
            except BaseException as exc:
                errors.append(exc)

        return threading.Thread(target=run)

    workers = [guarded(flush, host) for host in flushers]
    reader, producer = guarded(read_lake), guarded(produce)
    for thread in (reader, producer, *workers):
        thread.start()
    producer.join()
    produced.set()
    for thread in workers:
        thread.join()
    done.set()
    reader.join()
    assert errors == []

    stored = visible_lake(shared_lake)
    assert set(stored) == expected and set(stored.values()) == {1}
    raw = visible_lake(shared_lake, "raw")
    assert (len(raw), set(raw.values())) == (requests, {1})  # every request once
    passes = {h: [r for r in rs if r is not None and r.requests] for h, rs in results.items()}
    assert all(passes.values()), "a host never got the lead while there was work"
    assert any(r is None for rs in results.values() for r in rs), "the lead was never contended"
    assert sum(r.events for rs in passes.values() for r in rs) == len(expected)
    assert sum(r.duplicates for rs in passes.values() for r in rs) == (requests - 240) * 3
    assert flushers["a"].spool.pending_bytes() == 0


# -- a leader killed mid-flush

# Flushes like `mailpulse flush`, but hangs (holding the lead) once it has written
# `stop_at` lake files: the test kills it there, in the middle of a batch.
_HANGING_FLUSH = """
import json, os, sys, time
from pathlib import Path
from ingest.flush.flusher import Flusher
from ingest.providers import PROVIDERS
from mailpulse.config import parse_config
from mailpulse.storage import LakeStore

document = json.loads(Path(sys.argv[1]).read_text())
marker, stop_at = Path(sys.argv[2]), int(sys.argv[3])
write_parquet, written = LakeStore.write_parquet, []

def write_then_hang(store, frame, path, **options):
    write_parquet(store, frame, path, **options)
    written.append(path)
    if len(written) == stop_at:
        marker.with_suffix(".tmp").write_text(str(path))
        os.replace(marker.with_suffix(".tmp"), marker)
        time.sleep(600)

LakeStore.write_parquet = write_then_hang
Flusher(parse_config(document, providers=PROVIDERS), workers=0).flush()
"""


@pytest.mark.slow
def test_a_leader_killed_mid_flush_is_taken_over_without_loss_or_doubles(
    tmp_path: Path, pg_url: str, shared_lake: Path, host_flusher: Callable[[Config], Flusher]
) -> None:
    secret = new_secret()
    bodies = [[event(f"k{n}-{j}") for j in range(5)] for n in range(60)]
    bodies += bodies[:6]  # ESP retries of the first requests
    spool_backlog(pg_url, bodies)
    expected = {str(item["id"]) for body in bodies for item in body}
    document = {
        "data_dir": str(tmp_path / "a"),
        "spool": {"engine": "postgres", "url": pg_url},
        "lake": {"url": str(shared_lake), "flush_batch_bytes": 4096},
        "sources": {"in_house": {"provider": "generic", "secret": secret}},
    }
    (tmp_path / "a.json").write_text(json.dumps(document))
    marker = tmp_path / "hung"
    # Each batch writes an events and a raw file: the 5th file is the first of batch 3.
    leader = subprocess.Popen(
        [sys.executable, "-c", _HANGING_FLUSH, str(tmp_path / "a.json"), str(marker), "5"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    b = host_flusher(host_config(tmp_path, "b", pg_url, shared_lake, secret))
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert leader.poll() is None, "the leader ended before it hung"
            assert time.monotonic() < deadline, "the leader never got to its fifth file"
            time.sleep(0.05)
        partial = Path(marker.read_text())
        assert partial.exists()  # a file of the uncommitted batch is visible...
        (entry,) = journal(pg_url)
        assert entry[1] == "writing" and str(partial) in json.loads(entry[2])
        assert b.try_flush() is None  # ...while the leader, in another process, holds the lead
    finally:
        os.kill(leader.pid, signal.SIGKILL)
        leader.wait(timeout=30)

    result = b.flush(wait_seconds=60)  # the dead leader's session ends; b takes over
    assert not partial.exists()
    assert result.events < len(expected)  # the two committed batches stayed committed
    stored = visible_lake(shared_lake)
    assert set(stored) == expected and set(stored.values()) == {1}
    raw = visible_lake(shared_lake, "raw")
    assert (len(raw), set(raw.values())) == (len(bodies), {1})
    assert journal(pg_url) == []
    assert b.spool.pending_bytes() == 0
    assert not list(shared_lake.rglob(".*.tmp"))
