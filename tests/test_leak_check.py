"""The end-of-run secret check (``tests/leak_check.py``) fails a run that leaked a secret,
whichever tests ran and in whatever order, and passes one that did not."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SECRET = "probe-secret-0123456789"
PROBE = """
from pathlib import Path

from tests.leaks import RECORD


def test_another_test_runs_first() -> None:
    pass


def test_a_server_answers(tmp_path: Path) -> None:
    RECORD.secrets.add({secret!r})
    log = tmp_path / "server.log"
    log.write_text({log!r})
    RECORD.logs.append(log)
    RECORD.outputs.append(("GET /probe", {answer!r}))
"""


def run_probe(
    tmp_path: Path, *, log: str, answer: str, select: str = ""
) -> subprocess.CompletedProcess[str]:
    """A pytest run of its own, with the check, of two tests; the last records a secret."""
    (tmp_path / "test_probe.py").write_text(PROBE.format(secret=SECRET, log=log, answer=answer))
    command = [sys.executable, "-m", "pytest", "-p", "tests.leak_check", "-p", "no:cacheprovider"]
    command += ["-q", f"--rootdir={tmp_path}", "test_probe.py"]
    command += ["-k", select] if select else []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize("select", ["", "answers", "not another"])
def test_a_secret_in_an_answer_fails_the_run(tmp_path: Path, select: str) -> None:
    result = run_probe(tmp_path, log="started", answer=f"oops: {SECRET}", select=select)
    assert result.returncode == 1, result.stdout
    assert "a configured secret leaked: the run fails" in result.stdout
    assert "secret prob... leaked into GET /probe" in result.stdout
    assert SECRET not in result.stdout  # the report names the place, not the secret


def test_a_secret_in_a_server_log_fails_the_run(tmp_path: Path) -> None:
    result = run_probe(tmp_path, log=f"verifying with {SECRET}", answer="ok")
    assert result.returncode == 1, result.stdout
    assert "server.log" in result.stdout


def test_a_run_without_a_leak_passes(tmp_path: Path) -> None:
    result = run_probe(tmp_path, log="started", answer='{"error": "bad_signature"}')
    assert result.returncode == 0, result.stdout
    assert "leaked" not in result.stdout
