"""The simulator's ground truth: every unique event the receiver accepted, one JSON line each.

A test (or a person) compares the lake with this file: after a flush, the lake must hold
exactly these events, however many copies were sent and in whatever order they arrived.
The counts go to ``<truth>.summary.json`` beside it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mailpulse.simulate.esp.base import SimulatedEvent

FIELDS = ("source", "provider", "event_type", "recipient", "message_id", "campaign")


@dataclass(frozen=True, slots=True)
class TruthRecord:
    """One accepted unique event, with the source it was sent to."""

    source: str
    provider: str
    event: SimulatedEvent

    def as_json(self) -> dict[str, Any]:
        """The JSON line: identifying fields and the time it happened (ISO 8601, UTC)."""
        return {
            "source": self.source,
            "provider": self.provider,
            "event_type": self.event.event_type,
            "recipient": self.event.recipient,
            "message_id": self.event.message_id,
            "campaign": self.event.campaign,
            "occurred_at": datetime.fromtimestamp(self.event.occurred_at, tz=UTC).isoformat(),
            "sequence": self.event.sequence,
        }


def write_truth(path: Path, records: Iterable[TruthRecord], summary: Mapping[str, Any]) -> int:
    """Write the JSONL file (and its summary) atomically; the number of lines written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        json.dumps(record.as_json(), separators=(",", ":"))
        for record in sorted(records, key=lambda r: (r.source, r.event.sequence))
    ]
    _atomic_write(path, "".join(f"{line}\n" for line in lines))
    _atomic_write(summary_path(path), json.dumps(summary, indent=2) + "\n")
    return len(lines)


def read_truth(path: Path) -> list[dict[str, Any]]:
    """Every line of a truth file, parsed."""
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def summary_path(path: Path) -> Path:
    """Where the counts of a truth file are written."""
    return path.with_name(path.name.removesuffix(".jsonl") + ".summary.json")


def _atomic_write(path: Path, text: str) -> None:
    # A reader (a test, a notebook) never sees half a file.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
