"""The command line as cron and people use it: output formats, exit codes, one-line errors."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest

from analytics import REGISTRY
from ingest import create_app
from ingest.flush.flusher import Flusher, flusher_lock
from mailpulse.config import Config
from tests.helpers import event, mailpulse, signed_headers, write_config

HUMAN = "Mozilla/5.0 (Macintosh) AppleWebKit/605.1.15 Version/18.1 Safari/605.1.15"
T = 1_795_773_600


def fill(config: Config, secret: str) -> None:
    """Two campaigns whose rates are worked out by hand in the tests below."""
    events = [
        event("a1", "delivered", message_id="m1", email="m1@x.io", campaign="A", timestamp=T),
        event(
            "a2",
            "opened",
            message_id="m1",
            email="m1@x.io",
            campaign="A",
            timestamp=T + 9,
            user_agent=HUMAN,
        ),
        event(
            "a3",
            "clicked",
            message_id="m1",
            email="m1@x.io",
            campaign="A",
            timestamp=T + 20,
            user_agent=HUMAN,
        ),
        event("a4", "delivered", message_id="m2", email="m2@x.io", campaign="A", timestamp=T),
        event(
            "a5",
            "opened",
            message_id="m2",
            email="m2@x.io",
            campaign="A",
            timestamp=T + 3,
            user_agent="Mozilla/5.0",
        ),  # Apple's proxy: not a human open
        event(
            "a6",
            "bounced",
            message_id="m3",
            email="m3@x.io",
            campaign="A",
            timestamp=T,
            bounce_class="hard",
        ),
        event(
            "a7",
            "bounced",
            message_id="m4",
            email="m4@x.io",
            campaign="A",
            timestamp=T,
            bounce_class="soft",
        ),
        event("a8", "delivered", message_id="m4", email="m4@x.io", campaign="A", timestamp=T + 600),
        event("b1", "delivered", message_id="m5", email="m5@y.io", campaign="B", timestamp=T),
        event("b2", "delivered", message_id="m6", email="m6@y.io", campaign="B", timestamp=T),
        event(
            "b3",
            "opened",
            message_id="m6",
            email="m6@y.io",
            campaign="B",
            timestamp=T + 5,
            user_agent=HUMAN,
        ),
    ]
    app = create_app(config)
    body = json.dumps(events).encode()
    response = app.test_client().post(
        "/webhooks/in_house", data=body, headers=signed_headers(secret, body)
    )
    assert response.status_code == 200
    app.extensions["mailpulse"].spool.close()
    Flusher(config).flush()


@pytest.fixture
def filled(tmp_path: Path, secret: str) -> Path:
    from tests.helpers import load_config

    path = write_config(tmp_path, secret)
    fill(load_config(path, env={}), secret)
    return path


def test_report_json_has_the_hand_computed_rates(filled: Path) -> None:
    result = mailpulse("report", "--by", "campaign", "--format", "json", config=filled)
    assert result.returncode == 0, result.stderr
    rows = {row["campaign"]: row for row in json.loads(result.stdout)}
    assert list(rows["A"]) == ["campaign", *(metric.name for metric in REGISTRY)]
    assert (rows["A"]["machine_opens"], rows["A"]["total_opens"]) == (1, 2)
    assert rows["A"]["delivered"] == 3 and rows["A"]["bounced"] == 1
    assert rows["A"]["bounce_rate"] == pytest.approx(1 / 4)
    assert rows["A"]["unique_open_rate"] == pytest.approx(1 / 3)
    assert rows["A"]["unique_click_rate"] == pytest.approx(1 / 3)
    assert (rows["B"]["delivered"], rows["B"]["bounced"]) == (2, 0)
    assert rows["B"]["unique_open_rate"] == pytest.approx(1 / 2)
    assert rows["B"]["unique_click_rate"] == 0


def test_report_csv_and_table(filled: Path) -> None:
    result = mailpulse("report", "--by", "domain", "--format", "csv", config=filled)
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert {row["domain"]: int(row["delivered"]) for row in rows} == {"x.io": 3, "y.io": 2}
    table = mailpulse("report", config=filled)
    assert table.returncode == 0
    assert "33.3%" in table.stdout and "25.0%" in table.stdout


def test_report_filters_by_campaign_and_dates(filled: Path) -> None:
    only_b = json.loads(
        mailpulse("report", "--campaign", "B", "--format", "json", config=filled).stdout
    )
    assert [row["campaign"] for row in only_b] == ["B"]
    later = json.loads(
        mailpulse("report", "--since", "2026-11-28", "--format", "json", config=filled).stdout
    )
    assert later == []
    day = json.loads(
        mailpulse(
            "report",
            "--by",
            "date",
            "--since",
            "2026-11-27",
            "--until",
            "2026-11-28",
            "--format",
            "json",
            config=filled,
        ).stdout
    )
    assert [(row["date"], row["delivered"]) for row in day] == [("2026-11-27", 5)]


def test_report_on_an_empty_lake_says_what_to_do(tmp_path: Path, secret: str) -> None:
    config = write_config(tmp_path, secret)
    (tmp_path / "data").mkdir()
    result = mailpulse("report", config=config)
    assert result.returncode == 0
    assert "no data yet" in result.stdout
    assert json.loads(mailpulse("report", "--format", "json", config=config).stdout) == []


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["report", "--by", "colour"], 2, "Invalid value for '--by'"),
        (["report", "--since", "last tuesday"], 2, "Invalid value for '--since'"),
        (["report", "--period", "week"], 2, "--period applies to --by date only"),
        (["report", "--config", "/nonexistent.toml"], 3, "file not found"),
        (["frobnicate"], 2, "No such command"),
        (["serve", "--certfile", "/etc/hostname"], 2, "--certfile and --keyfile go together"),
    ],
)
def test_errors_are_one_line_and_a_non_zero_exit(
    args: list[str], status: int, message: str
) -> None:
    result = mailpulse(*args)
    assert result.returncode == status
    lines = [line for line in result.stderr.splitlines() if not line.startswith("Try ")]
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stderr


def test_a_config_with_mistakes_names_each_one(tmp_path: Path) -> None:
    path = tmp_path / "mailpulse.toml"
    path.write_text(
        '[sources.a]\nprovider = "nope"\n[sources.b]\nprovider = "generic"\n'
        'allow_ips = ["999.0.0.0/8"]\nsecret = "x"\n'
    )
    result = mailpulse("flush", config=path)
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2
    assert all(line.startswith("mailpulse: config error: ") for line in lines)
    assert "Traceback" not in result.stderr


def test_flush_while_another_flusher_holds_the_lock_exits_4(tmp_path: Path, secret: str) -> None:
    path = write_config(tmp_path, secret)
    with flusher_lock(tmp_path / "data" / "state"):
        result = mailpulse("flush", "--wait", "0.2", config=path)
    assert result.returncode == 4
    assert "another flusher" in result.stderr


def test_quarantine_list_as_json(tmp_path: Path, secret: str) -> None:
    from tests.helpers import load_config

    path = write_config(tmp_path, secret)
    config = load_config(path, env={})
    app = create_app(config)
    body = b'{"id": "q", "type": "nonsense"}'
    app.test_client().post("/webhooks/in_house", data=body, headers=signed_headers(secret, body))
    app.extensions["mailpulse"].spool.close()
    Flusher(config).flush()
    rows = json.loads(mailpulse("quarantine", "list", "--format", "json", config=path).stdout)
    assert [(r["source"], r["stage"]) for r in rows] == [("in_house", "map")]
    for width in ("60", "200"):  # a narrow terminal wraps the reason, never an id
        table = mailpulse("quarantine", "list", config=path, env={**os.environ, "COLUMNS": width})
        assert rows[0]["quarantine_id"] in table.stdout and rows[0]["request_id"] in table.stdout
    replay = mailpulse("quarantine", "replay", config=path)
    assert replay.returncode == 0 and "1 still quarantined" in replay.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["serve"],
        ["flush"],
        ["compact"],
        ["report"],
        ["demo"],
        ["dashboard"],
        ["simulate"],
        ["quarantine", "list"],
        ["quarantine", "replay"],
    ],
)
def test_every_command_has_help_with_an_example(command: list[str]) -> None:
    result = mailpulse(*command, "--help")
    assert result.returncode == 0
    assert "Example:" in result.stdout
    assert "--config" in result.stdout


@pytest.mark.slow
def test_demo_runs_the_whole_job_on_a_fresh_directory(tmp_path: Path) -> None:
    from ingest.providers import PROVIDERS
    from mailpulse.simulate.truth import read_truth

    result = mailpulse("demo", "--messages", "30", "--no-dashboard", cwd=tmp_path, timeout=180)
    assert result.returncode == 0, result.stderr
    assert "campaign performance" in result.stdout
    assert result.stderr.count("no mailpulse.toml found") == 1  # said once, not by each process
    truth = read_truth(tmp_path / "data" / "simulate" / "truth-7.jsonl")
    assert {line["source"] for line in truth} == set(PROVIDERS)  # every provider sent
    assert f"the lake holds {len(truth)} unique events" in result.stderr
    credentials = tmp_path / "data" / "demo_credentials.json"
    assert credentials.stat().st_mode & 0o077 == 0
    again = mailpulse("demo", "--messages", "30", "--no-dashboard", cwd=tmp_path, timeout=180)
    assert f"the lake holds {len(truth)} unique events" in again.stderr  # duplicates dropped


def test_serve_warns_when_no_source_is_configured(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    from mailpulse.demo import free_port

    path = tmp_path / "mailpulse.toml"
    path.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    log = tmp_path / "serve.log"
    with log.open("w") as stderr:
        server = subprocess.Popen(
            [sys.executable, "-m", "mailpulse", "serve", "--port", str(free_port())]
            + ["--config", str(path)],
            stderr=stderr,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while "warning" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    warnings = [line for line in log.read_text().splitlines() if "warning" in line]
    assert warnings == [
        f"mailpulse: warning: {path} has no [sources.<name>] table, so every webhook will be "
        "refused (404 unknown_source); add one per ESP"
    ]
