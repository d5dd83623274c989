"""The spool at its limits: the quota on the real server, and a disk that fills up."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from ingest.errors import SpoolUnavailable
from ingest.flush.flusher import Flusher
from ingest.spool import SpoolRecord
from ingest.spool.sqlite import SqliteSpool
from mailpulse.config import Config
from tests.helpers import event, in_house_request, lake_rows, mailpulse, running_server

QUOTA = 3 * 1024 * 1024
BIG_BODY = 200_000


def padded_event(event_id: str, size: int) -> bytes:
    body = json.dumps(event(event_id, reason="")).encode()
    return json.dumps(event(event_id, reason="r" * (size - len(body)))).encode()


def wait_for_status(post: Any, status: int, seconds: float = 10) -> requests.Response:
    deadline = time.monotonic() + seconds
    while True:
        answer: requests.Response = post()
        if answer.status_code == status or time.monotonic() > deadline:
            return answer
        time.sleep(0.1)


def test_a_small_quota_counts_what_is_waiting_on_a_real_server(tmp_path: Path) -> None:
    """3 MB and two workers: 200s until what waits exceeds the quota, 503 then, 200 after a
    flush (a live worker's own storage never counts against it)."""
    with running_server(tmp_path, workers=2, spool_max_bytes=QUOTA) as server:
        for n in range(40):
            assert server.post(event(f"small-{n}")).status_code == 200
        accepted = 40 * 1000  # a small event and its stored headers stay under 1,000 bytes
        n = 0
        while True:
            answer = server.post(padded_event(f"big-{n}", BIG_BODY))
            if answer.status_code != 200:
                break
            accepted += BIG_BODY + 1000
            n += 1
            assert accepted < 2 * QUOTA, "the quota never refused"
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"] == "spool_unavailable"
        assert int(answer.headers["Retry-After"]) > 0
        # Refused only once the waiting bytes and this request together exceed the quota.
        assert accepted + BIG_BODY > QUOTA
        assert requests.get(f"{server.base_url}/readyz", timeout=5).status_code == 503

        assert mailpulse("flush", config=server.config_path).returncode == 0
        again = wait_for_status(lambda: server.post(event("after-flush")), 200)
        assert again.status_code == 200, again.text
        assert requests.get(f"{server.base_url}/readyz", timeout=5).status_code == 200
    assert len(lake_rows(server.data_dir)) == 40 + n


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB filesystem of its own."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], check=False).returncode != 0:
            subprocess.run(["umount", "--lazy", str(mount)], check=False)


def spool_record(event_id: str) -> SpoolRecord:
    return in_house_request(padded_event(event_id, 4000))


def test_a_full_disk_refuses_appends_keeps_what_it_acknowledged_and_recovers(
    small_disk: Path, config: Config
) -> None:
    filler = small_disk / "filler"
    filler.write_bytes(bytes(600_000))  # what another program frees later
    spool = SqliteSpool(small_disk / "spool" / "spool.sqlite", max_bytes=1 << 30)
    try:
        fill_empty_and_flush(spool, filler, config)
    finally:
        spool.close()  # no file left open on the small filesystem: it is unmounted next


def fill_empty_and_flush(spool: SqliteSpool, filler: Path, config: Config) -> None:
    acknowledged: list[str] = []
    with pytest.raises(SpoolUnavailable, match="disk holding the spool is full"):
        for n in range(1000):
            spool.append(spool_record(f"full-{n}"))
            acknowledged.append(f"full-{n}")
    assert len(acknowledged) > 20
    assert spool.check_writable() is not None
    # Nothing half-written: exactly the acknowledged records wait, whole.
    waiting = spool.claim(1 << 30, 10_000).records
    assert [json.loads(r.body)["id"] for r in waiting] == acknowledged
    assert spool.pending_bytes() == sum(len(r.header()) + len(r.body) for r in waiting)

    filler.unlink()  # the disk has room again
    spool.append(spool_record("room-again"))
    Flusher(config, spool=spool).flush()
    assert spool.pending_bytes() == 0
    stored = {row["event_id"] for row in lake_rows(config.data_dir)}
    assert stored == {*acknowledged, "room-again"}
    spool.append(spool_record("and-on"))
    assert spool.check_writable() is None
