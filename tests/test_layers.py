"""Which package may import which: the import-linter contracts of pyproject.toml hold on
this tree, and each one fails a copy of the tree given one import the wrong way."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("mailpulse", "ingest", "analytics", "dashboards")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint(tree: Path, *contracts: str) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on ``tree`` (only ``contracts`` when given), the way ``make lint`` runs
    it, with ``tree`` first on the import path."""
    command = [str(LINT_IMPORTS), "--no-cache"]
    for contract in contracts:
        command += ["--contract", contract]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        command, cwd=tree, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_tree_keeps_every_contract() -> None:
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "wrong_way", "contract"),
    [
        # The three the house used to have:
        (
            "analytics/agent_rules.py",
            "from ingest.flush.agents import classify",
            "analytics-not-ingest",
        ),
        (
            "ingest/flush/maintenance.py",
            "from analytics.rollup import build",
            "ingest-not-analytics",
        ),
        ("dashboards/data.py", "from ingest.flush.flusher import Flusher", "dashboards-not-ingest"),
        # and the rest of the rules:
        (
            "dashboards/data.py",
            "from mailpulse.config import load_config",
            "dashboards-through-analytics",
        ),
        ("analytics/lake.py", "from mailpulse.cli import main", "nothing-imports-the-cli"),
        ("mailpulse/config.py", "from ingest.providers import PROVIDERS", "shared-base"),
        ("mailpulse/lake.py", "from analytics import rollup", "shared-base"),
    ],
)
def test_a_wrong_way_import_breaks_its_contract(
    tmp_path: Path, module: str, wrong_way: str, contract: str
) -> None:
    tree = tmp_path / "tree"
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, tree / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    assert lint(tree, contract).returncode == 0, "the copy keeps the contract before the edit"
    with (tree / module).open("a", encoding="utf-8") as handle:
        handle.write(f"\n{wrong_way}  # noqa: E402\n")
    result = lint(tree, contract)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "0 kept, 1 broken" in result.stdout
    assert module.removesuffix(".py").replace("/", ".") in result.stdout


def test_make_lint_checks_the_contracts() -> None:
    """``make test`` runs ``lint``, and ``lint`` runs import-linter."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    lint_recipe = re.search(r"^lint:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert lint_recipe is not None and "$(BIN)/lint-imports" in lint_recipe.group(1)
    assert re.search(r"^test: .*\blint\b", makefile, re.MULTILINE)
