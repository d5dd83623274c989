"""A compaction running while a report reads never counts an event twice or misses one.

Compaction swaps a partition's files for one ``merged`` file: the merged file appears, the
journal commits, then the old files are deleted. A reader lists the lake once per query;
within a partition a merged file hides the files of older batches, so a listing taken in
between counts each row once; and a query whose files were deleted after its listing runs
again on a new one. Each test runs on a local lake and on one on S3 (moto's server).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest
from flask.testing import FlaskClient

from analytics import open_lake, rollup
from analytics.totals import totals_source
from ingest import create_app
from ingest.flush.flusher import Flusher
from ingest.flush.maintenance import compact
from ingest.flush.state import FlusherState
from mailpulse import lake
from mailpulse.config import Config
from tests.helpers import event, signed_headers
from tests.s3 import S3Server

T0 = 1_795_773_600  # 2026-11-27T10:00:00Z
ROUNDS = 4
PER_ROUND = 25
TOTAL = ROUNDS * PER_ROUND


@pytest.fixture(params=["local", "s3"])
def lake_config(request: pytest.FixtureRequest, make_config: Any) -> Config:
    if request.param == "local":
        built: Config = make_config()
        return built
    server: S3Server = request.getfixturevalue("s3_server")
    url = f"s3://{server.new_bucket()}/lake"
    lake_table = {
        "url": url,
        "endpoint_url": server.endpoint,
        "access_key_id": server.key_id,
        "secret_access_key": server.secret_key,
    }
    built = make_config(lake=lake_table)
    return built


def _fill(config: Config, secret: str, rounds: int = ROUNDS, name: str = "d") -> None:
    """``rounds`` flushes of PER_ROUND deliveries on one day: that many files in its
    partition."""
    app = create_app(config)
    client: FlaskClient = app.test_client()
    try:
        for n in range(rounds):
            body = [
                event(
                    f"{name}-{n}-{i}", "delivered", timestamp=T0 + i, message_id=f"{name}-{n}-{i}"
                )
                for i in range(PER_ROUND)
            ]
            raw = json.dumps(body).encode()
            answer = client.post(
                "/webhooks/in_house", data=raw, headers=signed_headers(secret, raw)
            )
            assert answer.status_code == 200
            Flusher(config).flush()
    finally:
        app.extensions["mailpulse"].spool.close()


def _counted(config: Config) -> tuple[int, int, int]:
    """Events, distinct event ids and delivered messages, as a report reads them."""
    with open_lake(config) as the_lake:
        events, distinct = the_lake.sql(
            "SELECT count(*), count(DISTINCT event_id) FROM events"
        ).row(0)
        (delivered,) = the_lake.metrics(None, metrics=["delivered"]).row(0)
    return events, distinct, delivered


def _read_every_file(config: Config) -> int:
    """Rows in every data file of the events table, as a reader without the rule sees them."""
    store = config.lake_store
    paths = [s.path for s in store.files(lake.table_dir(store, "events"))]
    return store.count_rows(paths)


def test_a_report_during_a_compaction_counts_every_event_once(
    lake_config: Config, secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = lake_config
    _fill(config, secret)
    assert len(lake.list_files(config.lake_store, "events")) == ROUNDS
    # Hold the compaction between its merged file appearing and the old files going away.
    written, resume = threading.Event(), threading.Event()
    commit = FlusherState.commit

    def held_commit(self: FlusherState, *args: Any) -> None:
        written.set()
        assert resume.wait(60)
        commit(self, *args)

    monkeypatch.setattr(FlusherState, "commit", held_commit)
    worker = threading.Thread(target=compact, args=(Flusher(config),))
    worker.start()
    try:
        assert written.wait(60)
        # Both generations are in the store now: every row is there twice.
        assert _read_every_file(config) == 2 * TOTAL
        assert _counted(config) == (TOTAL, TOTAL, TOTAL)
    finally:
        resume.set()
        worker.join(60)
    assert _read_every_file(config) == TOTAL  # the old files are gone
    assert [Path(p).name.split("-")[0] for p in lake.list_files(config.lake_store, "events")] == [
        "merged"
    ]
    assert _counted(config) == (TOTAL, TOTAL, TOTAL)


def test_a_query_whose_files_vanished_after_its_listing_runs_again(
    lake_config: Config, secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = lake_config
    _fill(config, secret)
    before = rollup.events_files(config.lake_store)
    compact(Flusher(config))  # deletes every file of that listing
    listings: list[list[str]] = []
    real: Callable[[Any], list[str]] = rollup.events_files

    def stale_then_real(store: Any) -> list[str]:
        listings.append(before if not listings else real(store))
        return listings[-1]

    with open_lake(config) as the_lake:
        monkeypatch.setattr(rollup, "events_files", stale_then_real)
        (count,) = the_lake.sql("SELECT count(*) FROM events").row(0)
        (delivered,) = the_lake.metrics(None, metrics=["delivered"]).row(0)
    assert (count, delivered) == (TOTAL, TOTAL)
    assert listings[0] == before and listings[1] != before  # it listed again


def test_reports_stay_exact_while_compactions_and_flushes_run_in_a_loop(
    lake_config: Config, secret: str
) -> None:
    """Real threads, no pauses: a reader loops over reports while a writer flushes new files
    and compacts them, over and over, each compaction rebuilding the rollup. Every report
    counts each event once, whole files only, and never fewer events than the report before
    it: over the events, and through the rollup's totals (one delivered message per event)."""
    config = lake_config
    _fill(config, secret)
    stop = threading.Event()
    seen: list[tuple[int, int]] = []
    delivered: list[int] = []
    failures: list[BaseException] = []

    def read() -> None:
        try:
            while not stop.is_set():
                with open_lake(config) as the_lake:
                    query = "SELECT count(*), count(DISTINCT event_id) FROM events"
                    seen.append(the_lake.sql(query).row(0))
                    delivered.append(the_lake.metrics(None, metrics=["delivered"]).item())
        except (duckdb.Error, OSError) as exc:
            failures.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    loops = 5
    try:
        for loop in range(loops):
            _fill(config, secret, rounds=2, name=f"loop{loop}")
            compact(Flusher(config), after_rewrite=rollup.build)
    finally:
        stop.set()
        reader.join(120)
    assert not failures
    with open_lake(config) as the_lake:
        assert totals_source(the_lake.store, the_lake.files, the_lake.con) is not None
    assert all(count % PER_ROUND == 0 for count in delivered)
    assert delivered == sorted(delivered) and delivered[-1] == TOTAL + loops * 2 * PER_ROUND
    counts = [count for count, _distinct in seen]
    assert len(seen) > loops
    assert all(count == distinct for count, distinct in seen)  # never an event twice
    assert all(count % PER_ROUND == 0 for count in counts)  # whole files only
    assert counts == sorted(counts)  # never one missing that was counted before
    assert counts[-1] == TOTAL + loops * 2 * PER_ROUND
