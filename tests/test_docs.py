"""Documentation that is generated or promised cannot drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

from analytics import docs
from analytics.metrics import REGISTRY
from ingest import docs as provider_docs
from ingest.providers import PROVIDERS
from mailpulse.cli import cli
from mailpulse.cli import commands as _commands  # noqa: F401  (registers the commands)

ROOT = Path(__file__).resolve().parent.parent


def test_metrics_page_matches_the_registry() -> None:
    committed = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
    assert committed == docs.render(), "run: python -m analytics.docs --write"
    for metric in REGISTRY:
        assert f"| `{metric.name}` |" in committed


def test_providers_page_matches_the_registry() -> None:
    committed = (ROOT / "docs" / "providers.md").read_text(encoding="utf-8")
    assert committed == provider_docs.render(), "run: python -m ingest.docs --write"
    for name, provider in PROVIDERS.items():
        assert f"\n## {name}\n" in committed
        for key in provider.credential_keys:
            assert f"`{key}`" in committed


def test_readme_names_every_command_and_both_set_up_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make demo" in readme and "make test" in readme
    for name, command in cli.commands.items():
        assert f"mailpulse {name}" in readme, name
        for sub in getattr(command, "commands", {}):
            assert f"mailpulse {name} {sub}" in readme, f"{name} {sub}"


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r"^make test$", ci, re.MULTILINE)
