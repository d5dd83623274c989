"""Generate ``docs/providers.md`` from the registry: ``python -m ingest.docs --write``.

Each provider module documents its ESP in its docstring (authentication, mapping, ids, the
choices made where the ESP's docs are silent); this page gathers those with the settings
every provider class declares. A test compares the committed page with this output.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from pathlib import Path

from ingest.providers import PROVIDERS, Provider
from ingest.providers.events import EVENT_TYPES

_ROLE = re.compile(r":(?:mod|func|class|meth|attr|data):`([^`]+)`")
_LITERAL_BLOCK = re.compile(r"::\n\n((?:    .*\n?|\n)+)")
# Docstrings cite design sections as (DESIGN.md, "Title"); the design notes are not shipped,
# and the README has each of those sections under the same title.
_DESIGN_REFERENCE = re.compile(r'DESIGN\.md, "([^"]+)"')
PAGE = Path(__file__).resolve().parent.parent / "docs" / "providers.md"

_INTRO = """# Providers

Generated from `ingest/providers/` by `python -m ingest.docs --write`; do not edit by hand.

Each `[sources.<name>]` table in `mailpulse.toml` names a `provider`; the ESP then posts to
`/webhooks/<name>`. Every credential key may hold a list (any one verifies, for rotation) and
may be given as `<key>_env` or `<key>_file`. Every source also takes `allow_ips`,
`rate_limit`, `max_body_bytes` and `campaign` (the field read as the campaign, instead of
the provider's default below).

| provider | credentials | options | content types | event id | default campaign | per request |
| --- | --- | --- | --- | --- | --- | --- |
"""


def render() -> str:
    """The whole page, as committed."""
    lines = [_INTRO.rstrip("\n")]
    for name in sorted(PROVIDERS):
        provider = PROVIDERS[name]
        lines.append(
            "| "
            + " | ".join(
                [
                    f"[`{name}`](#{name})",
                    _codes(provider.credential_keys),
                    _codes(provider.option_keys) or "-",
                    _codes(provider.content_types),
                    provider.dedup_key.replace("|", "/"),
                    f"`{provider.default_campaign_field}`"
                    if provider.default_campaign_field
                    else "-",
                    "1" if provider.max_batch == 1 else f"up to {provider.max_batch} (simulated)",
                ]
            )
            + " |"
        )
    for name in sorted(PROVIDERS):
        lines += ["", *_section(name, PROVIDERS[name])]
    return "\n".join(lines) + "\n"


def _section(name: str, provider: type[Provider]) -> list[str]:
    module = importlib.import_module(provider.__module__)
    lines = [f"## {name}", "", _markdown(module.__doc__), ""]
    if hasattr(module, "__path__"):  # a package: its mapping module documents the mapping
        try:
            mapping = importlib.import_module(f"{module.__name__}.mapping")
        except ModuleNotFoundError:
            mapping = None
        if mapping is not None and mapping.__doc__:
            lines += [f"### {name}: mapping", "", _markdown(mapping.__doc__), ""]
    not_reported = sorted(EVENT_TYPES - provider.emits)
    lines.append("Event types it can report: " + _codes(provider.emits) + ".")
    if not_reported:
        lines.append("Never from this ESP: " + _codes(frozenset(not_reported)) + ".")
    if provider.probe_methods:
        lines.append(
            f"Answers {' and '.join(sorted(provider.probe_methods))} with 200 (the ESP's check "
            "that the URL exists); nothing is stored."
        )
    return lines


def _markdown(docstring: str | None) -> str:
    # Docstrings are reStructuredText: roles, inline literals and literal blocks become
    # Markdown.
    text = inspect.cleandoc(docstring or "")
    text = _ROLE.sub(lambda m: f"``{m[1].lstrip('.~')}``", text)
    text = _DESIGN_REFERENCE.sub(lambda m: f"[README, {m[1]}](../README.md#{_slug(m[1])})", text)
    text = text.replace("``", "`")
    return _LITERAL_BLOCK.sub(lambda m: ":\n\n```\n" + _dedent(m[1]) + "```\n\n", text)


def _slug(title: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def _codes(values: frozenset[str]) -> str:
    return ", ".join(f"`{value}`" for value in sorted(values))


def _dedent(block: str) -> str:
    return "\n".join(line[4:] for line in block.rstrip("\n").split("\n")) + "\n"


def main(argv: list[str]) -> int:
    """``--write`` replaces the page; without it, print the page."""
    page = render()
    if "--write" in argv:
        PAGE.parent.mkdir(parents=True, exist_ok=True)
        PAGE.write_text(page, encoding="utf-8")
    else:
        sys.stdout.write(page)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
