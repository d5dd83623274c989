"""A provider is the receiving side only: the receiver never loads an ESP's encoder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ingest.providers import PROVIDERS
from mailpulse.simulate.esp import ESPS

REPO = Path(__file__).resolve().parents[2]

# Imports the receiver (which registers every provider) and builds its app, then lists the
# modules that were loaded.
_PROBE = """
import json, sys
from ingest import create_app
from ingest.providers import PROVIDERS
from mailpulse.config import parse_config
source = {"provider": "generic", "secret": "s" * 32}
document = {"data_dir": sys.argv[1], "sources": {"in_house": source}}
app = create_app(parse_config(document, env={}, providers=PROVIDERS))
assert "in_house" in app.extensions["mailpulse"].sources
print(json.dumps(sorted(sys.modules)))
"""


def test_importing_and_building_the_receiver_app_loads_no_encoder(tmp_path: Path) -> None:
    loaded = subprocess.run(
        [sys.executable, "-c", _PROBE, str(tmp_path / "data")],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    modules = set(json.loads(loaded.stdout))
    assert "ingest.providers.sendgrid" in modules  # the probe did load the providers
    encoders = {m for m in modules if m.startswith("mailpulse.simulate")}
    encoders |= {
        m for m in modules if m.startswith("ingest.providers.") and m.endswith(".simulate")
    }
    assert encoders == set()


def test_every_provider_has_one_esp_that_sends_exactly_what_it_reports() -> None:
    """One list per ESP: the simulator reads the receiver's ``emits`` and ``max_batch``."""
    assert set(ESPS) == set(PROVIDERS)
    for name, esp in ESPS.items():
        assert esp.provider is PROVIDERS[name]
        assert (esp.emits, esp.max_batch) == (PROVIDERS[name].emits, PROVIDERS[name].max_batch)
        assert not hasattr(PROVIDERS[name], "encode")
        assert not hasattr(PROVIDERS[name], "demo_credentials")
