"""Shadow mode and what ``mailpulse serve`` warns about at start, against the real server.

A source with ``shadow = true`` accepts what fails authentication too, and records the
verdict with the stored request; every other source stays strict.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from ingest.intake.notices import world_readable
from tests.helpers import (
    Server,
    event,
    lake_rows,
    mailpulse,
    new_secret,
    signed_headers,
    start_server,
    write_config,
)

pytestmark = pytest.mark.slow

EXTRA = """
[sources.legacy]
provider = "generic"
secret_env = "SHADOW_TEST_SECRET"
shadow = true
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("shadow")
    secret = new_secret()
    os.environ["SHADOW_TEST_SECRET"] = secret
    config = write_config(directory, secret, EXTRA, flush_interval_seconds=3600)
    config.chmod(0o644)  # holds the in_house secret and anyone may read it: warned about
    running = start_server(config, directory, secret, workers=1)
    try:
        yield running
    finally:
        running.stop()
        os.environ.pop("SHADOW_TEST_SECRET", None)


def _post(server: Server, source: str, body: bytes, headers: dict[str, str]) -> requests.Response:
    return requests.post(
        f"{server.base_url}/webhooks/{source}", data=body, headers=headers, timeout=10
    )


def _body(event_id: str) -> bytes:
    return json.dumps(event(event_id)).encode()


def test_a_shadow_source_accepts_and_records_every_verdict(server: Server) -> None:
    good = _body("sh-good")
    forged = _body("sh-forged")
    unsigned = _body("sh-unsigned")
    vouched = _body("sh-vouched")
    wrong = signed_headers("not-the-secret", forged)
    sent = {
        "sh-good": _post(server, "legacy", good, signed_headers(server.secret, good)),
        "sh-forged": _post(server, "legacy", forged, wrong),
        "sh-unsigned": _post(server, "legacy", unsigned, {"Content-Type": "application/json"}),
        # A client cannot vouch for itself: its own verdict header is replaced.
        "sh-vouched": _post(
            server,
            "legacy",
            vouched,
            {**signed_headers("not-the-secret", vouched), "X-Mailpulse-Verdict": "verified"},
        ),
    }
    assert {key: r.status_code for key, r in sent.items()} == dict.fromkeys(sent, 200)
    # Every other source stays strict.
    strict = _post(server, "in_house", forged, wrong)
    assert strict.status_code == 401 and strict.json()["error"] == "bad_signature"

    assert mailpulse("flush", config=server.config_path).returncode == 0
    verdicts = {}
    for row in lake_rows(server.data_dir, "raw"):
        if row["source"] == "legacy":
            event_id = json.loads(row["body"])["id"]
            verdicts[event_id] = json.loads(row["headers"])["x-mailpulse-verdict"]
    assert verdicts == {
        "sh-good": "verified",
        "sh-forged": "bad_signature",
        "sh-unsigned": "missing_timestamp",
        "sh-vouched": "bad_signature",
    }
    stored = {row["event_id"] for row in lake_rows(server.data_dir) if row["source"] == "legacy"}
    assert len(stored) == 4  # accepted means nothing is lost while credentials are set up

    metrics = requests.get(f"{server.base_url}/metrics", timeout=10).text
    found = re.search(
        r'mailpulse_signature_failures_total\{reason="bad_signature",source="legacy"\} (\S+)',
        metrics,
    )
    assert found and float(found.group(1)) == 2.0, metrics


def test_every_failure_is_logged_with_reason_source_and_address(server: Server) -> None:
    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    failures = [line for line in lines if line["message"].startswith("authentication failed")]
    shadowed = {(line["reason"], line["shadow"]) for line in failures if line["source"] == "legacy"}
    assert {("bad_signature", True), ("missing_timestamp", True)} <= shadowed
    strict = [line for line in failures if line["source"] == "in_house"]
    assert strict and strict[0]["reason"] == "bad_signature" and not strict[0]["shadow"]
    assert all(line["client_ip"] == "127.0.0.1" for line in failures)
    assert server.secret not in server.log()


def test_the_start_warns_about_shadow_mode_and_a_readable_secret(server: Server) -> None:
    log = server.log()
    assert "WARNING: source 'legacy' is in SHADOW MODE" in log
    config = server.config_path.resolve()
    assert f"WARNING: {config} holds secrets and every user on this machine can read it" in log


def test_only_files_any_user_can_read_are_reported(tmp_path: Path) -> None:
    modes = {"private": 0o600, "group": 0o640, "everyone": 0o644, "all": 0o777}
    paths = []
    for name, mode in modes.items():
        path = tmp_path / name
        path.write_text("secret")
        path.chmod(mode)
        paths.append(path)
    found = world_readable((*paths, tmp_path / "gone"))
    assert [(path.name, mode) for path, mode in found] == [("everyone", 0o644), ("all", 0o777)]
    assert all(mode & stat.S_IROTH for _, mode in found)
