"""Keys on both sides: the demo's generated credentials, and the keys the simulator signs with.

The demo setup (no ``mailpulse.toml``) has one source per registered provider, named after
it. Its credentials are generated once by ``Esp.demo_credentials``
(:mod:`mailpulse.simulate.esp`) and kept in ``<data_dir>/demo_credentials.json`` (mode 0600)
with both halves, so the receiver and the simulator agree across runs::

    {"sources": {"sendgrid": {"provider": "sendgrid",
                              "receiver": {"public_key": "MFkw..."},
                              "sender": {"private_key": "-----BEGIN PRIVATE KEY-----..."}}}}

The simulator signs a source's requests with the source's own first value of each credential
key (right for shared secrets), overlaid by the sender halves of that file when present, then
by ``--sender-keys FILE`` (``{"<source>": {"<key>": "<value>"}}``) for key pairs whose private
half the receiver never sees.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mailpulse.config import SourceConfig
from mailpulse.errors import MailpulseError
from mailpulse.sources import DEMO_CREDENTIALS as DEMO_CREDENTIALS
from mailpulse.sources import read_demo_credentials as read_demo_credentials

LEGACY_DEMO_SECRET = "demo_secret"  # the single generic secret older demos generated
#: The URL demo credentials are registered for (Mandrill signs the URL as registered).
DEMO_BASE_URL = "http://127.0.0.1:8025"


def ensure_demo_credentials(data_dir: Path) -> dict[str, dict[str, Any]]:
    """Read the demo credentials, generating those of providers not in the file yet.

    Only ``mailpulse demo`` (and ``mailpulse simulate`` on the demo setup) calls this;
    loading a configuration reads the file and never creates it.

    Returns ``{source: {"provider": ..., "receiver": {...}, "sender": {...}}}``.
    """
    from mailpulse.simulate.esp import ESPS

    path = data_dir / DEMO_CREDENTIALS
    stored = read_demo_credentials(path)
    missing = [name for name in sorted(ESPS) if name not in stored]
    if not missing:
        return stored
    for name in missing:
        receiver, sender = ESPS[name].demo_credentials(f"{DEMO_BASE_URL}/webhooks/{name}")
        stored[name] = {"provider": name, "receiver": receiver, "sender": sender}
    legacy = data_dir / LEGACY_DEMO_SECRET
    if "generic" in missing and legacy.is_file():  # keep an older demo's signing secret
        secret = legacy.read_text().strip()
        stored["generic"]["receiver"] = {"secret": secret}
        stored["generic"]["sender"] = {"secret": secret}
    _write_private(path, {"sources": stored}, exclusive=not path.exists())
    # Another process may have created the file first: everyone uses the stored one.
    return read_demo_credentials(path)


def _write_private(path: Path, document: Mapping[str, Any], *, exclusive: bool) -> None:
    """Write atomically with mode 0600; with ``exclusive``, never replace an existing file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".demo-credentials-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:  # mkstemp creates it 0600
            json.dump(document, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        if exclusive:
            with contextlib.suppress(FileExistsError):  # theirs wins; we read it back
                os.link(temporary, path)
        else:
            os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)


def sender_keys(
    sources: Sequence[SourceConfig], data_dir: Path, extra: Path | None = None
) -> dict[str, dict[str, str]]:
    """The keys each source's traffic is signed with (see the module docstring)."""
    keys: dict[str, dict[str, str]] = {
        source.name: {
            key: values[0].reveal() for key, values in source.credentials.items() if values
        }
        for source in sources
    }
    providers = {source.name: source.provider for source in sources}
    overlays: list[Mapping[str, Mapping[str, str]]] = []
    demo = data_dir / DEMO_CREDENTIALS
    if demo.is_file():  # only for sources of the provider the keys were made for
        overlays.append(
            {
                name: entry.get("sender") or {}
                for name, entry in read_demo_credentials(demo).items()
                if entry.get("provider") == providers.get(name)
            }
        )
    if extra is not None:
        overlays.append(_read_sender_file(extra))
    for overlay in overlays:
        for name, values in overlay.items():
            if name in keys:
                keys[name].update(values)
    return keys


def _read_sender_file(path: Path) -> dict[str, dict[str, str]]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MailpulseError(
            f"cannot read --sender-keys {path} ({exc.__class__.__name__})"
        ) from None
    valid = isinstance(document, dict) and all(
        isinstance(values, dict) and all(isinstance(v, str) for v in values.values())
        for values in document.values()
    )
    if not valid:
        raise MailpulseError(f'--sender-keys {path} must be {{"<source>": {{"<key>": "<value>"}}}}')
    return document  # type: ignore[no-any-return]
