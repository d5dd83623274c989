"""The lake on object storage: the whole path against a real S3-compatible server.

The same traffic goes through the real server into a lake on S3 (moto's server on loopback,
reached with an ``endpoint_url`` and keys the test generates) and into a local directory:
flush, compaction, the rollup, a report, the dashboard's pages, the suppression export and a
notebook must give the same answers on both, and the numbers the traffic implies.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest
import streamlit as st
from nbclient import NotebookClient
from streamlit.testing.v1 import AppTest

from tests.helpers import REPO, event, mailpulse, running_server
from tests.s3 import S3Server

pytestmark = pytest.mark.slow

T0 = 1_795_773_600  # 2026-11-27T10:00:00Z
DAY = 86_400
HUMAN = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120 Safari/537.36"
MESSAGES = 30


def _message(i: int) -> dict[str, Any]:
    return {
        "message_id": f"m-{i}",
        "email": f"user{i}@example.com",
        "campaign": "winter" if i % 2 else "spring",
    }


def _sent(i: int) -> int:
    return T0 - (i % 3) * DAY  # three days, so three partitions


def deliveries() -> list[dict[str, Any]]:
    """Every message delivered, but every tenth hard-bounced."""
    return [
        event(f"b-{i}", "bounced", timestamp=_sent(i), bounce_class="hard", **_message(i))
        if i % 10 == 0
        else event(f"d-{i}", "delivered", timestamp=_sent(i), **_message(i))
        for i in range(MESSAGES)
    ]


def engagement() -> list[dict[str, Any]]:
    """Human opens of every third message, clicks of every fifth, complaints of every 7th."""
    found = []
    for i in range(MESSAGES):
        if i % 10 == 0:
            continue
        human = {"user_agent": HUMAN, "ip": "203.0.113.7", **_message(i)}
        if i % 3 == 0:
            found.append(event(f"o-{i}", "opened", timestamp=_sent(i) + 60, **human))
        if i % 5 == 0:
            found.append(event(f"c-{i}", "clicked", timestamp=_sent(i) + 120, **human))
        if i % 7 == 0:
            found.append(event(f"x-{i}", "complained", timestamp=_sent(i) + 180, **_message(i)))
    return found


@dataclass
class Answers:
    """What every reader said about one lake."""

    report: list[dict[str, Any]]
    suppressions: str
    tiles: dict[str, dict[str, str]]
    notebook: list[str]


def _run_whole_path(directory: Path, lake_toml: str) -> Answers:
    with running_server(directory, extra=lake_toml) as server:
        config = server.config_path
        for round_, body in enumerate((deliveries(), engagement(), deliveries())):
            # Several requests per round, so each partition gets several files to compact.
            for part in (body[::2], body[1::2]):
                assert server.post(part).status_code == 200, round_
            assert mailpulse("flush", config=config).returncode == 0
        compacted = mailpulse("compact", config=config)
        assert compacted.returncode == 0, compacted.stderr
        # The usual state of a lake: a rollup, and a day of events newer than it.
        late = event(
            "d-late",
            "delivered",
            timestamp=T0 + 3600,
            message_id="m-late",
            email="late@example.com",
            campaign="winter",
        )
        assert server.post([late]).status_code == 200
        assert mailpulse("flush", config=config).returncode == 0
    report = mailpulse("report", "--by", "campaign", "--format", "json", config=config)
    assert report.returncode == 0, report.stderr
    export = mailpulse("suppressions", "export", "--format", "csv", config=config)
    assert export.returncode == 0, export.stderr
    return Answers(
        report=json.loads(report.stdout),
        suppressions=export.stdout,
        tiles=_dashboard_tiles(config),
        notebook=_notebook_outputs(config, directory),
    )


def _dashboard_tiles(config: Path) -> dict[str, dict[str, str]]:
    """Each page run by Streamlit's AppTest over the lake; the tiles it shows."""
    previous = os.environ.get("MAILPULSE_CONFIG")
    os.environ["MAILPULSE_CONFIG"] = str(config)
    try:
        tiles = {}
        for page in ("overview", "campaigns", "deliverability", "suppressions", "health"):
            st.cache_data.clear()
            st.cache_resource.clear()
            path = REPO / "dashboards" / "views" / f"{page}.py"
            app = AppTest.from_file(str(path), default_timeout=120).run()
            assert not app.exception, (page, [e.message for e in app.exception])
            # Every tile but the one that says how long ago the last flush was.
            tiles[page] = {m.label: m.value for m in app.metric if "ago" not in m.value}
        return tiles
    finally:
        st.cache_data.clear()
        st.cache_resource.clear()
        if previous is None:
            os.environ.pop("MAILPULSE_CONFIG", None)
        else:
            os.environ["MAILPULSE_CONFIG"] = previous


def _notebook_outputs(config: Path, workdir: Path) -> list[str]:
    """The campaign notebook run top to bottom against the lake; its text outputs."""
    notebook = nbformat.read(REPO / "notebooks" / "campaign_performance.ipynb", as_version=4)
    env = {key: value for key, value in os.environ.items() if key != "MAILPULSE_DATA_DIR"}
    env["MAILPULSE_CONFIG"] = str(config)
    client = NotebookClient(
        notebook, kernel_name="python3", timeout=240, resources={"metadata": {"path": workdir}}
    )
    client.execute(env=env)  # raises on the first cell that fails
    texts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            texts.append(output.get("text", "") or str(output.get("data", {}).get("text/plain")))
            texts.append(str(output.get("data", {}).get("text/markdown", "")))
    return texts


@pytest.fixture(scope="module")
def both_lakes(
    tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server
) -> Iterator[tuple[Answers, Answers, str, Path]]:
    """The same traffic into a local lake and into one on S3."""
    local_dir = tmp_path_factory.mktemp("local")
    local = _run_whole_path(local_dir, "")
    bucket = s3_server.new_bucket()
    remote_dir = tmp_path_factory.mktemp("s3")
    remote = _run_whole_path(remote_dir, s3_server.lake_table(f"s3://{bucket}/mailpulse/lake"))
    yield local, remote, bucket, remote_dir


def test_every_reader_gives_the_same_answers_on_s3_as_on_a_local_directory(
    both_lakes: tuple[Answers, Answers, str, Path],
) -> None:
    local, remote, _bucket, _directory = both_lakes
    assert remote.report == local.report
    assert remote.suppressions == local.suppressions
    assert remote.tiles == local.tiles
    assert any(remote.tiles.values()), "the pages showed no tiles at all"


def test_the_numbers_are_the_ones_the_traffic_implies(
    both_lakes: tuple[Answers, Answers, str, Path],
) -> None:
    _local, remote, _bucket, _directory = both_lakes
    rows = {row["campaign"]: row for row in remote.report}
    hard = [i for i in range(MESSAGES) if i % 10 == 0]
    for campaign, parity in (("spring", 0), ("winter", 1)):
        mine = [i for i in range(MESSAGES) if i % 2 == parity]
        late = 1 if campaign == "winter" else 0  # flushed after the rollup was built
        assert rows[campaign]["delivered"] == len([i for i in mine if i not in hard]) + late
        assert rows[campaign]["hard_bounced"] == len([i for i in mine if i in hard])
        assert rows[campaign]["complaints"] == len(
            [i for i in mine if i % 7 == 0 and i not in hard]
        )
    suppressed = {line.split(",")[0] for line in remote.suppressions.splitlines()[1:]}
    expected = {f"user{i}@example.com" for i in range(MESSAGES) if i % 10 == 0}
    expected |= {f"user{i}@example.com" for i in range(MESSAGES) if i % 7 == 0 and i % 10}
    assert suppressed == expected


def test_the_lake_lives_in_the_bucket_and_nowhere_on_disk(
    both_lakes: tuple[Answers, Answers, str, Path], s3_server: S3Server
) -> None:
    _local, remote, bucket, directory = both_lakes
    keys = s3_server.objects(f"{bucket}/mailpulse/lake")
    events = [key for key in keys if "/events/date=" in key]
    # Compaction left one merged file per day, and the late delivery one file after it.
    assert sorted(key.split("/")[-1].split("-")[0] for key in events) == ["merged"] * 3 + ["part"]
    assert any("/raw/date=" in key for key in keys)
    assert [key for key in keys if "/messages/rollup-" in key and key.endswith(".json")]
    assert not (directory / "data" / "lake").exists()
    assert any(f"s3://{bucket}/mailpulse/lake" in text for text in remote.notebook)


def test_an_unreachable_lake_is_one_line_and_loses_nothing(
    tmp_path: Path, s3_server: S3Server
) -> None:
    """A bucket that does not exist: flush and report say so in one line and exit 1; the
    spooled requests wait, and once the bucket exists the same flush stores them."""
    bucket = f"missing-{os.getpid()}"
    with running_server(tmp_path, extra=s3_server.lake_table(f"s3://{bucket}/lake")) as server:
        assert server.post(deliveries()[:3]).status_code == 200
        config = server.config_path
        for command in (("flush",), ("report", "--by", "campaign")):
            result = mailpulse(*command, config=config)
            assert result.returncode == 1, result.stderr
            (line,) = result.stderr.strip().splitlines()
            assert line.startswith("mailpulse: cannot "), line
            assert f"s3://{bucket}" in line and "bucket" in line.split(f"s3://{bucket}")[1], line
            assert "Traceback" not in result.stderr
            assert s3_server.secret_key not in result.stdout + result.stderr
        s3_server.filesystem().create_dir(bucket)
        assert mailpulse("flush", config=config).returncode == 0
    report = mailpulse("report", "--by", "campaign", "--format", "json", config=config)
    assert sum(row["delivered"] for row in json.loads(report.stdout)) == 2  # and one bounce
