"""The demo setup (no mailpulse.toml): loading it reads and never writes; only
``mailpulse demo`` generates the demo sources' credentials."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from analytics import LakeNotFound, open_lake
from ingest.providers import PROVIDERS
from mailpulse import config as configuration
from mailpulse.simulate.credentials import ensure_demo_credentials
from tests.helpers import load_config, mailpulse
from tests.lakes import T0, row, write_lake


@pytest.fixture
def empty_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory, with no mailpulse setting in the environment."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    monkeypatch.delenv("MAILPULSE_CONFIG", raising=False)
    monkeypatch.delenv("MAILPULSE_DATA_DIR", raising=False)
    return workdir


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("MAILPULSE_")}


def test_loading_a_config_and_opening_the_lake_in_an_empty_directory_writes_nothing(
    empty_dir: Path,
) -> None:
    for config in (configuration.load_config(), load_config()):
        assert config.is_demo and config.data_dir == Path("data") and config.sources == {}
    with open_lake() as lake:  # the demo lake before `mailpulse demo`: empty
        assert lake.summary()["events"] == 0
        assert lake.ingestion_status() == {"quarantine_rows": 0}
    assert list(empty_dir.iterdir()) == []
    with pytest.raises(LakeNotFound, match="mailpulse demo"):  # a named one must be there
        open_lake(empty_dir / "data")


def test_demo_sources_are_the_credentials_mailpulse_demo_generated(tmp_path: Path) -> None:
    env = {"MAILPULSE_DATA_DIR": str(tmp_path / "d")}
    assert load_config(None, env=env).sources == {}
    ensure_demo_credentials(tmp_path / "d")
    config = load_config(None, env=env)
    assert {name: s.provider for name, s in config.sources.items()} == {n: n for n in PROVIDERS}
    assert (tmp_path / "d" / "demo_credentials.json").stat().st_mode & 0o077 == 0
    first = config.sources["generic"].credentials["secret"][0].reveal()
    again = load_config(None, env=env)
    assert again.sources["generic"].credentials["secret"][0].reveal() == first
    assert len(first) >= 32


def test_an_older_demo_secret_keeps_signing_the_generic_source(tmp_path: Path) -> None:
    (tmp_path / "demo_secret").write_text("f" * 64)
    ensure_demo_credentials(tmp_path)
    config = load_config(None, env={"MAILPULSE_DATA_DIR": str(tmp_path)})
    assert config.sources["generic"].credentials["secret"][0].reveal() == "f" * 64


def test_serve_without_config_or_demo_credentials_says_what_to_do(tmp_path: Path) -> None:
    result = mailpulse("serve", "--port", "0", cwd=tmp_path, env=_clean_env(), timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "mailpulse: no mailpulse.toml and no demo credentials in data/: "
        "run `mailpulse demo` first, or write a mailpulse.toml"
    ]
    assert list(tmp_path.iterdir()) == []


def test_report_before_the_demo_reports_zeros_and_writes_nothing(tmp_path: Path) -> None:
    result = mailpulse("report", "--format", "json", cwd=tmp_path, env=_clean_env(), timeout=60)
    assert result.returncode == 0, result.stderr
    assert list(tmp_path.iterdir()) == []


def test_report_reads_the_demo_lake_without_demo_credentials(tmp_path: Path) -> None:
    write_lake(tmp_path / "data", [row("e1", "delivered", "a@x.io", T0, campaign="spring")])
    before = sorted(tmp_path.rglob("*"))
    result = mailpulse("report", "--format", "csv", cwd=tmp_path, env=_clean_env(), timeout=60)
    assert result.returncode == 0, result.stderr
    assert "spring" in result.stdout
    assert sorted(tmp_path.rglob("*")) == before  # no credentials appeared
