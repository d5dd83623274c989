"""Documentation that is generated or promised cannot drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from analytics import docs
from analytics.metrics import REGISTRY
from ingest import docs as provider_docs
from ingest.providers import PROVIDERS
from mailpulse.cli import cli
from mailpulse.cli import commands as _commands  # noqa: F401  (registers the commands)

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md"))


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


def _headings(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    titles = re.findall(r"^#+ (.+)$", re.sub(r"```.*?```", "", text, flags=re.S), re.M)
    return {re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-") for title in titles}


@pytest.mark.parametrize("page", ["README.md", *(f"docs/{p.name}" for p in DOCS)])
def test_every_file_and_section_a_page_links_to_exists(page: str) -> None:
    path = ROOT / page
    text = path.read_text(encoding="utf-8")
    assert "DESIGN.md" not in text  # the design notes are not part of the repository
    for target in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", text):
        link, anchor = target
        if link.startswith(("http://", "https://", "mailto:")):
            continue
        linked = (path.parent / link).resolve() if link else path
        assert linked.exists(), f"{page} links to {link}, which is not in the repository"
        if anchor and linked.suffix == ".md":
            assert anchor in _headings(linked), f"{page} links to {link}#{anchor}"
