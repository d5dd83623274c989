"""Providers stay independent: adding one touches its own module, its registration, its tests."""

from __future__ import annotations

import ast
from pathlib import Path

from ingest.providers import PROVIDERS

PROVIDERS_DIR = Path(__file__).resolve().parents[2] / "ingest" / "providers"
# Modules every provider may use: the interface, the event it maps into and the helpers
# meant for sharing.
SHARED = {"base", "shared_secret", "freshness", "events"}


def provider_of(path: Path) -> str:
    relative = path.relative_to(PROVIDERS_DIR)
    return relative.parts[0].removesuffix(".py")


def imported_providers(path: Path) -> set[str]:
    """Names of provider modules that ``path`` imports, absolutely or relatively."""
    found = set()
    package_parts = ["ingest", "providers", *path.relative_to(PROVIDERS_DIR).parts[:-1]]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package_parts[: len(package_parts) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            names = [module] + [f"{module}.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[:2] == ["ingest", "providers"] and len(parts) > 2:
                found.add(parts[2])
    return found


def test_no_provider_module_imports_another() -> None:
    files = [
        path
        for path in PROVIDERS_DIR.rglob("*.py")
        if path.parent != PROVIDERS_DIR or path.stem not in {"__init__", *SHARED}
    ]
    assert len({provider_of(path) for path in files}) == len(PROVIDERS)
    for path in files:
        own = provider_of(path)
        others = imported_providers(path) - SHARED - {own}
        assert not others, f"{path.relative_to(PROVIDERS_DIR)} imports {sorted(others)}"


def test_the_shared_modules_import_no_provider() -> None:
    for name in SHARED:
        assert imported_providers(PROVIDERS_DIR / f"{name}.py") <= SHARED, name


def test_every_registered_provider_lives_in_its_own_module() -> None:
    for name, provider in PROVIDERS.items():
        assert provider.__module__ == f"ingest.providers.{name}", name
