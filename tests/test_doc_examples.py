"""Every code block in the README and docs/ runs as printed (or is listed below with why not).

Python and shell blocks run on a small hand-built lake in a scratch directory laid out as the
demo leaves it (``data/``); the generic-format example posts to a real receiver; crontab
lines run their command; TOML blocks are loaded as a real ``mailpulse.toml``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import lake_rows, load_config, mailpulse, running_server
from tests.lakes import T0, row, write_lake

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "notebooks/README.md"]
RUNNABLE = {"python", "sh", "cron", "toml"}  # the languages a block can be run in

#: Blocks that cannot run here, by the start of their first line, and why.
NOT_RUN = {
    "make demo    #": "installs and runs everything; tests/test_cli.py runs `mailpulse demo`",
    "mailpulse serve --config mailpulse.toml &": "minutes of traffic; see tests/test_simulate.py",
    "pip install .": "installs the project; `mailpulse serve` is tested throughout",
    "sudo cp deploy/nginx.conf": "needs root; tests/test_nginx_proxy.py runs this nginx.conf",
    "mailpulse serve --config /etc/mailpulse.toml --host 0.0.0.0 --port 443": (
        "port 443 and real certificates; tests/test_https.py runs the same options"
    ),
    "make demo        #": "installs Jupyter; tests/test_notebooks.py runs the notebooks",
    "import os\n\nfrom flask import Flask, abort, request\nfrom standardwebhooks": (
        "a downstream's receiver; tests/test_cli_actions.py verifies a signed action this way"
    ),
    "mailpulse sql --dialect spark --lake s3a://": (
        "a Spark installation and S3; tests/test_spark.py runs the printed script in Spark"
    ),
    "import subprocess\n\nfrom pyspark.sql import SparkSession": (
        "Spark and S3; tests/test_spark.py runs the statements this way in local Spark"
    ),
    "mailpulse sql --dialect trino --lake s3://": (
        "a Trino cluster; tests/test_sql_dialects.py parses the printed script back"
    ),
}


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    page: str
    line: int
    language: str
    text: str

    def __str__(self) -> str:
        return f"{self.page}:{self.line}"


def _blocks() -> list[Block]:
    found = []
    for path in PAGES:
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.M | re.S):
            line = text.count("\n", 0, match.start()) + 1
            found.append(Block(str(path.relative_to(ROOT)), line, match[1], match[2]))
    return found


BLOCKS = [block for block in _blocks() if block.language in RUNNABLE]


def _not_run(block: Block) -> bool:
    return block.text.startswith(tuple(NOT_RUN))


def _runs(language: str) -> list[Block]:
    return [b for b in BLOCKS if b.language == language and not _not_run(b)]


@pytest.fixture
def lake_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch directory holding ``data/`` with a few events and a config pointing at it."""
    rows = [
        row("d1", "delivered", "ann@example.com", T0, campaign="winter-sale", message_id="m1"),
        row("o1", "opened", "ann@example.com", T0, campaign="winter-sale", message_id="m1"),
        row(
            "b1",
            "bounced",
            "bob@example.com",
            T0,
            campaign="winter-sale",
            message_id="m2",
            bounce_class="hard",
        ),
    ]
    write_lake(tmp_path / "data", rows)
    (tmp_path / "mailpulse.toml").write_text(f'data_dir = "{tmp_path / "data"}"\n')
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _shell(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_block_is_run_or_says_why_not() -> None:
    for start in NOT_RUN:
        assert any(b.text.startswith(start) for b in BLOCKS), f"no block starts {start!r} now"
    assert all(_not_run(block) or block in _all_run() for block in BLOCKS)
    # Shell commands run as crontab lines here; a shell block must say why it cannot run.
    assert not _runs("sh"), "a new shell block: run it in a test, or add it to NOT_RUN"


def _all_run() -> list[Block]:
    return [block for language in RUNNABLE for block in _runs(language)]


@pytest.mark.parametrize("block", _runs("python"), ids=str)
def test_python_block_runs(block: Block, lake_dir: Path, capfd: pytest.CaptureFixture[str]) -> None:
    if "X-Webhook-Signature" in block.text:
        _run_generic_example(block, lake_dir)
        return
    exec(compile(block.text, str(block), "exec"), {})  # noqa: S102  (the README's own code)
    assert "delivered" in capfd.readouterr().out  # what it printed is the lake's


def _run_generic_example(block: Block, directory: Path) -> None:
    """The signing example, sent to a real receiver: the event must reach the lake."""
    (directory / "receiver").mkdir()
    with running_server(directory / "receiver") as server:
        code = block.text.replace("https://hooks.example.com", server.base_url)
        exec(compile(code, str(block), "exec"), {"SECRET": server.secret})  # noqa: S102
        assert mailpulse("flush", config=server.config_path).returncode == 0
    assert [r["event_id"] for r in lake_rows(server.data_dir)] == ["evt-1"]


@pytest.mark.parametrize("block", _runs("cron"), ids=str)
def test_crontab_lines_run(block: Block, lake_dir: Path) -> None:
    for line in block.text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        command = line.split(None, 5)[5]  # after minute, hour, day, month, weekday
        command = command.replace("/etc/mailpulse.toml", str(lake_dir / "mailpulse.toml"))
        command = command.replace("/srv/exports", str(lake_dir / "exports"))
        result = _shell(command, lake_dir)
        assert result.returncode == 0, (line, result.stderr)
    assert "bob@example.com" in (lake_dir / "exports" / "sendgrid.json").read_text()
    assert "bob@example.com,hard_bounce" in (lake_dir / "exports" / "changes.csv").read_text()


@pytest.mark.parametrize("block", _runs("toml"), ids=str)
def test_toml_block_is_a_valid_configuration(block: Block, tmp_path: Path) -> None:
    text = block.text
    for path in set(re.findall(r'_file = "([^"]+)"', text)):  # files it names get a stand-in
        stand_in = tmp_path / Path(path).name
        stand_in.write_text("x" * 32)
        stand_in.chmod(0o600)
        text = text.replace(path, str(stand_in))
    env = dict(_stand_ins(tomllib.loads(text)))  # variables it names get a stand-in too
    if "data_dir" not in text:
        text = f'data_dir = "{tmp_path / "data"}"\n{text}'
    text = re.sub(r'^data_dir = ".*"$', f'data_dir = "{tmp_path / "data"}"', text, flags=re.M)
    tomllib.loads(text)
    (tmp_path / "mailpulse.toml").write_text(text)
    load_config(tmp_path / "mailpulse.toml", env=env)


def _stand_ins(table: dict[str, Any], path: tuple[str, ...] = ()) -> Iterator[tuple[str, str]]:
    """A value for each environment variable a ``<key>_env`` names: a PostgreSQL URL for the
    spool's, an https URL for another ``url`` (a Slack webhook), 32 bytes for a secret."""
    for key, value in table.items():
        if isinstance(value, dict):
            yield from _stand_ins(value, (*path, key))
        elif key.endswith("_env") and isinstance(value, str):
            if path[:1] == ("spool",):
                yield value, "postgresql://mailpulse@127.0.0.1/mailpulse"
            elif key == "url_env":
                yield value, "https://hooks.example.com/x"
            else:
                yield value, "x" * 32
