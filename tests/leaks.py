"""What the test run could leak a secret through, checked as the run ends (leak_check.py).

Every server started through :func:`tests.helpers.start_server` records its log file and
the credentials its configuration holds (read when it starts, while any ``<key>_env``
variable is still set); every ``mailpulse`` command run through :func:`tests.helpers.mailpulse`
records its output; every HTTP answer read with ``requests`` is recorded by the session
fixture in ``tests/conftest.py``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Record:
    """The run's secrets and the places they must not appear."""

    secrets: set[str] = field(default_factory=set)
    logs: list[Path] = field(default_factory=list)
    outputs: list[tuple[str, str]] = field(default_factory=list)  # (what, text)

    def leaks(self) -> list[tuple[str, str]]:
        """Where a recorded secret appears: (the log or output, the secret's first characters)."""
        haystacks = [(str(p), p.read_text(errors="replace")) for p in self.logs if p.is_file()]
        haystacks += self.outputs
        return sorted(
            {
                (where, secret[:4] + "...")
                for where, text in haystacks
                for secret in self.secrets
                if secret in text
            }
        )


RECORD = Record()


def secret_forms(value: str) -> set[str]:
    """A secret as it could leak: plain, base64, and for ``user:pass`` the password and Basic."""
    forms = {value, base64.b64encode(value.encode()).decode()}
    if ":" in value:
        password = value.partition(":")[2]
        forms |= {password, base64.b64encode(password.encode()).decode()}
    return {form for form in forms if len(form) >= 8}


def record_server(config_path: Path, log_path: Path) -> None:
    """Remember a server's log and every credential its configuration holds."""
    from ingest.providers import PROVIDERS
    from mailpulse.config import load_config

    RECORD.logs.append(log_path)
    config = load_config(config_path, providers=PROVIDERS)
    for source in config.sources.values():
        if source.provider == "sendgrid":
            continue  # its credential is a public key: meant to be seen
        for values in source.credentials.values():
            for value in values:
                RECORD.secrets |= secret_forms(value.reveal())
