"""Suppression exports in the formats ESPs import, written atomically for cron.

* ``csv``: ``address,rule,reason,suppressed_at,event_ids`` (event ids space-separated);
* ``jsonl``: one object per line: address, rule, reason, suppressed_at, event_ids, rules;
* ``sendgrid``: ``{"recipient_emails": [...]}``, the body of SendGrid's
  ``POST /v3/asm/suppressions/global`` (global unsubscribes);
* ``mailgun``: CSV ``address,code,error,created_at`` (RFC 2822 time), the file of Mailgun's
  ``POST /v3/<domain>/bounces/import``;
* ``ses``: CSV lines ``address,BOUNCE`` or ``address,COMPLAINT`` without a header, for an
  SES account suppression list import job.

With ``changes_since_last`` only the difference from the previous export to the same path
and format is written: ``csv`` and ``jsonl`` gain a ``change`` column (``added`` or
``removed``); the ESP formats can only add, so they hold the additions and the removals are
counted in the result (lift those by hand or through the ESP's API).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from analytics.errors import AnalyticsError

FORMATS = ("csv", "jsonl", "sendgrid", "mailgun", "ses")
EXTENSIONS = {"csv": "csv", "jsonl": "jsonl", "sendgrid": "json", "mailgun": "csv", "ses": "csv"}


class ExportError(AnalyticsError):
    """The export could not be written."""


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote."""

    path: Path
    rows: int
    added: int
    removed: int
    total: int


def render(rows: list[dict[str, Any]], fmt: str) -> bytes:
    """The bytes of an export in ``fmt`` (rows may carry a ``change`` key)."""
    if fmt == "jsonl":
        return b"".join(orjson.dumps(_plain(row)) + b"\n" for row in rows)
    if fmt == "sendgrid":
        return orjson.dumps({"recipient_emails": [row["address"] for row in rows]}) + b"\n"
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if fmt == "csv":
        changes = any("change" in row for row in rows)
        writer.writerow(
            ["address", "rule", "reason", "suppressed_at", "event_ids"]
            + (["change"] if changes else [])
        )
        for row in rows:
            writer.writerow(
                [
                    row["address"],
                    row["rule"],
                    row["reason"] or "",
                    row["suppressed_at"].isoformat(),
                    " ".join(row["event_ids"]),
                ]
                + ([row.get("change", "")] if changes else [])
            )
    elif fmt == "mailgun":
        writer.writerow(["address", "code", "error", "created_at"])
        for row in rows:
            code = "550" if row["rule"] in ("hard_bounce", "invalid_drop") else ""
            error = row["reason"] or row["rule"]
            writer.writerow(
                [
                    row["address"],
                    code,
                    f"{row['rule']}: {error}",
                    format_datetime(row["suppressed_at"]),
                ]
            )
    elif fmt == "ses":
        for row in rows:
            writer.writerow(
                [row["address"], "COMPLAINT" if row["rule"] == "complaint" else "BOUNCE"]
            )
    else:
        raise ExportError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return buffer.getvalue().encode()


def export(
    frame: pl.DataFrame, out: Path, fmt: str, state_dir: Path, *, changes_since_last: bool = False
) -> ExportResult:
    """Write the suppression list ``frame`` to ``out`` atomically and remember it."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    current = {row["address"]: row for row in frame.to_dicts()}
    memory = state_dir / "exports" / f"{_key(out, fmt)}.json"
    previous = _load(memory)
    added = [current[a] for a in sorted(current.keys() - previous.keys())]
    removed = sorted(previous.keys() - current.keys())
    if changes_since_last:
        rows = [{**row, "change": "added"} for row in added]
        if fmt in ("csv", "jsonl"):
            rows += [{**previous[a], "change": "removed"} for a in removed]
    else:
        rows = list(current.values())
    _write_atomic(out, render(rows, fmt))
    _write_atomic(memory, orjson.dumps({a: _plain(r) for a, r in current.items()}))
    return ExportResult(out, len(rows), len(added), len(removed), len(current))


def preview(frame: pl.DataFrame, out: Path, fmt: str, state_dir: Path) -> pl.DataFrame:
    """What the next export to ``out`` would add and remove, without writing anything."""
    current = set(frame["address"].to_list())
    previous = set(_load(state_dir / "exports" / f"{_key(out, fmt)}.json"))
    rows = [{"address": a, "change": "added"} for a in sorted(current - previous)]
    rows += [{"address": a, "change": "removed"} for a in sorted(previous - current)]
    return pl.DataFrame(rows, schema={"address": pl.String(), "change": pl.String()})


def _key(out: Path, fmt: str) -> str:
    return hashlib.sha256(f"{out.resolve()}\0{fmt}".encode()).hexdigest()[:24]


def _load(memory: Path) -> dict[str, dict[str, Any]]:
    try:
        stored = orjson.loads(memory.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ExportError(f"cannot read the previous export's state {memory}: {exc}") from exc
    for row in stored.values():
        row["suppressed_at"] = datetime.fromisoformat(row["suppressed_at"])
    return dict(stored)


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {
        key: value.isoformat() if hasattr(value, "isoformat") else value
        for key, value in row.items()
    }


def _write_atomic(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc.strerror or exc}") from exc
